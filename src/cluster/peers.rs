//! Clients to the other brokers of the cluster, one per destination, made on first use at
//! the address the destination registered and replaced when it registers another: the
//! connections a coordinator or a partition leader keeps to its peers for requests that are
//! not replication (transaction markers, transaction verification).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::broker::Broker;
use crate::client::NodeClient;
use crate::types::NodeId;

pub struct PeerClients {
    broker: Arc<Broker>,
    /// What the clients call themselves (`client_id`), after this node's id.
    purpose: &'static str,
    /// A client per destination, with the address it was made for.
    clients: Mutex<HashMap<NodeId, (String, Arc<NodeClient>)>>,
}

impl PeerClients {
    pub fn new(broker: Arc<Broker>, purpose: &'static str) -> Self {
        Self { broker, purpose, clients: Mutex::new(HashMap::new()) }
    }

    /// The client of `destination` at its registered address (a new one when it moved).
    pub fn client(&self, destination: NodeId) -> Result<Arc<NodeClient>, String> {
        let addr = super::replica::leader_address(&self.broker, destination)
            .ok_or_else(|| format!("broker {} has no registered address", destination.0))?;
        let mut clients = match self.clients.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some((a, c)) = clients.get(&destination)
            && *a == addr
        {
            return Ok(c.clone());
        }
        let timeout = self.broker.config.settings().request_timeout;
        let client = Arc::new(NodeClient::new(addr.clone(), format!("broker-{}-{}", self.broker.node_id, self.purpose), timeout));
        clients.insert(destination, (addr, client.clone()));
        Ok(client)
    }
}
