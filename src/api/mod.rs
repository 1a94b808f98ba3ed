//! Kafka API handlers.
