//! A hosted partition.
