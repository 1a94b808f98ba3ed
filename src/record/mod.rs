//! Record batches (magic v2) as raw bytes: parse the header, validate, patch in place.
