//! Waiting on asynchronous work from synchronous code.
//!
//! Most request handlers are synchronous; in a cluster some of what they do is a network
//! round trip (a metadata change committed by the quorum, a request to the active
//! controller). [`block_on`] runs such a future to completion from a handler without starving
//! the runtime: on a multi-threaded runtime's worker it hands the worker's other tasks to
//! another thread first (`block_in_place`), so the tasks the future waits for (the quorum's
//! outbound calls run there) keep running even when every worker is waiting.

use std::future::Future;

/// Runs `f` to completion on the calling thread (see the module doc).
pub fn block_on<F: Future>(f: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| h.block_on(f))
        }
        // A current-thread runtime (tests) or no runtime: the future must not need this
        // thread's runtime to make progress.
        _ => futures::executor::block_on(f),
    }
}
