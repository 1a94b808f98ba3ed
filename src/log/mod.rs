//! Bytes on disk for one partition: segments, indexes, recovery, retention.
