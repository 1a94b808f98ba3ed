//! Any frame body must decode to a request or an error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// As in the broker binary: hostile array lengths must not abort (see `blumfeld::alloc`).
#[global_allocator]
static ALLOCATOR: blumfeld::alloc::LazyLargeAlloc = blumfeld::alloc::LazyLargeAlloc;

fuzz_target!(|data: &[u8]| {
    let _ = blumfeld::api::decode_request(bytes::Bytes::copy_from_slice(data));
});
