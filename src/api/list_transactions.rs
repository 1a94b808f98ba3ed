//! ListTransactions: the transactional ids this coordinator holds (`kafka-transactions list`,
//! `find-hanging`), filtered by state names (unknown names are echoed back, as Kafka does),
//! producer ids, how long the transaction has run (v1+) and an id pattern (v2+).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId};

use super::{Api, str_bytes};
use crate::txn::ListFilter;
use crate::txn::state::TxnState as State;

pub fn handle(api: &Api, req: ListTransactionsRequest) -> ListTransactionsResponse {
    let mut r = ListTransactionsResponse::default();
    let mut filter = ListFilter { duration_ms: req.duration_filter, ..Default::default() };
    for name in &req.state_filters {
        match State::from_name(name.as_str()) {
            Some(state) => filter.states.push(state),
            None => r.unknown_state_filters.push(name.clone()),
        }
    }
    filter.producer_ids = req.producer_id_filters.iter().map(|p| p.0).collect();
    if let Some(pattern) = req.transactional_id_pattern.as_ref().filter(|p| !p.is_empty()) {
        match regex::Regex::new(pattern.as_str()) {
            Ok(re) => filter.transactional_id_pattern = Some(re),
            Err(_) => {
                r.error_code = ResponseError::InvalidRegularExpression.code();
                return r;
            }
        }
    }
    r.transaction_states = api
        .txns
        .list(&filter)
        .into_iter()
        .map(|d| {
            let mut s = TransactionState::default();
            s.transactional_id = TransactionalId(str_bytes(&d.transactional_id));
            s.producer_id = ProducerId(d.producer_id);
            s.transaction_state = str_bytes(d.state.name());
            s
        })
        .collect();
    r
}
