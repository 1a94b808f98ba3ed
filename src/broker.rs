//! The partitions this broker hosts.
