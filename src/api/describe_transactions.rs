//! DescribeTransactions: the coordinator's view of each transactional id (`kafka-transactions
//! describe`): producer id and epoch, state, timeout, start time, partitions.

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName};

use super::{Api, str_bytes};

pub fn handle(api: &Api, req: DescribeTransactionsRequest) -> DescribeTransactionsResponse {
    let mut r = DescribeTransactionsResponse::default();
    for id in req.transactional_ids {
        let mut s = TransactionState::default();
        match api.txns.describe(id.as_str()) {
            Ok(d) => {
                s.transaction_state = str_bytes(d.state.name());
                s.transaction_timeout_ms = d.timeout_ms;
                s.transaction_start_time_ms = d.start_ms;
                s.producer_id = ProducerId(d.producer_id);
                s.producer_epoch = d.producer_epoch;
                s.topics = d
                    .partitions
                    .into_iter()
                    .map(|(topic, partitions)| {
                        let mut t = TopicData::default();
                        t.topic = TopicName(str_bytes(&topic));
                        t.partitions = partitions;
                        t
                    })
                    .collect();
            }
            Err(e) => {
                s.error_code = e.code();
                s.producer_id = ProducerId(-1);
                s.producer_epoch = -1;
                s.transaction_start_time_ms = -1;
            }
        }
        s.transactional_id = id;
        r.transaction_states.push(s);
    }
    r
}
