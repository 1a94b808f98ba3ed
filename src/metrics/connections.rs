//! Client connections: how many are open, and how many were opened and closed.

use prometheus::{IntCounter, IntGauge, Opts};

use super::{Definer, MetricsError};

pub(super) struct ConnectionFamilies {
    open: IntGauge,
    created: IntCounter,
    closed: IntCounter,
}

impl ConnectionFamilies {
    pub(super) fn define(d: &mut Definer) -> Result<Self, MetricsError> {
        Ok(Self {
            open: d.add(IntGauge::with_opts(Opts::new(
                "blumfeld_connections_open",
                "Client connections open now (Kafka: socket-server-metrics connection-count)",
            ))?)?,
            created: d.add(IntCounter::with_opts(Opts::new(
                "blumfeld_connections_created_total",
                "Client connections accepted (Kafka: socket-server-metrics connection-creation-total)",
            ))?)?,
            closed: d.add(IntCounter::with_opts(Opts::new(
                "blumfeld_connections_closed_total",
                "Client connections closed (Kafka: socket-server-metrics connection-close-total)",
            ))?)?,
        })
    }

    pub(super) fn opened(&self) -> ConnectionGuard {
        self.created.inc();
        self.open.inc();
        ConnectionGuard { open: self.open.clone(), closed: self.closed.clone() }
    }
}

/// Counts one connection as open for as long as it lives; dropping it counts the close, so
/// every exit path of a connection task is covered.
#[must_use = "the connection counts as closed when the guard is dropped"]
pub struct ConnectionGuard {
    open: IntGauge,
    closed: IntCounter,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.open.dec();
        self.closed.inc();
    }
}
