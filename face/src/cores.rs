//! One frame's networks on several cores.
//!
//! tract's matrix kernels can split one product over a rayon pool. The door
//! gives them the same two-worker pool it runs frames on: when one frame is in
//! flight the idle worker takes half of each product (lower latency); when both
//! workers carry a frame each keeps its own products (rayon runs a job's
//! pieces on the thread that waits for them when nobody steals them), so
//! pipelined frames lose nothing.

use std::sync::Arc;
use tract_linalg::multithread::{multithread_tract_scope, Executor};

pub use rayon::ThreadPool;

/// A pool of workers that the networks' kernels split their products over.
#[derive(Clone, Debug)]
pub struct Cores {
    pool: Arc<ThreadPool>,
}

impl Cores {
    /// A pool of `threads` workers named `name-N`.
    pub fn new(threads: usize, name: &str) -> Result<Self, rayon::ThreadPoolBuildError> {
        Self::with_start(threads, name, |_| {})
    }

    /// A pool whose workers each call `start` with their index first (to set
    /// up thread-local state, such as where their allocations go).
    pub fn with_start(
        threads: usize,
        name: &str,
        start: impl Fn(usize) + Send + Sync + 'static,
    ) -> Result<Self, rayon::ThreadPoolBuildError> {
        let name = name.to_string();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("{name}-{i}"))
            .start_handler(start)
            .build()?;
        Ok(Cores { pool: Arc::new(pool) })
    }

    /// The pool, for jobs of whole frames.
    pub fn pool(&self) -> &ThreadPool {
        &self.pool
    }

    /// Its number of workers.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `f` on the calling thread with every network it runs splitting
    /// its products over the pool's workers (from inside one of them, idle
    /// workers steal the pieces; from outside, the calling thread waits).
    pub fn split<R>(&self, f: impl FnOnce() -> R) -> R {
        multithread_tract_scope(Executor::MultiThread(self.pool.clone()), f)
    }

    /// Runs `f` on one of the pool's workers, its networks split as by [`Cores::split`].
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(|| self.split(f))
    }

    /// Runs `main` and `beside` at once on two of the pool's workers:
    /// `main`'s networks split as by [`Cores::split`] (so whichever worker is
    /// done first helps with them), `beside`'s run whole on their worker
    /// (for small networks, whose products cost less than handing them out).
    pub fn join_beside<A: Send, B: Send>(&self, main: impl FnOnce() -> A + Send, beside: impl FnOnce() -> B + Send) -> (A, B) {
        self.pool.install(|| rayon::join(|| self.split(main), || multithread_tract_scope(Executor::SingleThread, beside)))
    }
}
