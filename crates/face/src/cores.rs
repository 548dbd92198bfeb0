//! One frame's work on several cores.
//!
//! tract's matrix kernels can split one product over a rayon pool, and the
//! HOG detector can search its pyramid levels at once. Both only ever hand
//! the pool *leaves*: pieces that wait for nothing. The thread that asks
//! waits for them without running anything else, which is why only a plain
//! thread (not a rayon worker) may split: a rayon worker waiting on a pool
//! runs other queued jobs meanwhile, and a whole frame run in the middle of
//! another one's matrix product would find that product's per-thread scratch
//! still borrowed (tract's kernels are not re-entrant on one thread).

use std::cell::RefCell;
use std::sync::Arc;
use tract_linalg::multithread::{multithread_tract_scope, set_threading_panel_threshold, Executor};

/// Output tiles below which tract keeps a split product on one thread (its
/// default is 64). The embedding's last stage (256 channels on 4×4 and 3×3
/// maps, a sixth of its multiply-adds, 2.4 MB of weights per product) has
/// 16–32 tiles and ran on one core; split, each core streams half the
/// weights. Measured in turns (docs/benchmarks.md, "Cores"): the network
/// alone on two workers 0.94× → 0.74–0.78× its one-thread time, through
/// `bench speed` 0.82–0.88× → 0.80–0.86×; YuNet unchanged at the door's
/// scale (lower thresholds start to cost it there).
pub const SPLIT_PANEL_THRESHOLD: usize = 16;

thread_local! {
    /// The pool this thread is splitting its work over, inside [`Cores::split`].
    static SPLITTING: RefCell<Option<Arc<rayon::ThreadPool>>> = const { RefCell::new(None) };
}

/// A pool of workers that one frame's networks and detector split their work over.
#[derive(Clone, Debug)]
pub struct Cores {
    pool: Arc<rayon::ThreadPool>,
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
        // Process-wide, but read only by products run on a pool (inside `split`).
        set_threading_panel_threshold(SPLIT_PANEL_THRESHOLD);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(move |i| format!("{name}-{i}"))
            .start_handler(start)
            .build()?;
        Ok(Cores { pool: Arc::new(pool) })
    }

    /// Runs `f` on the calling thread with the networks it runs splitting
    /// their products, and the HOG detector its pyramid, over the pool's
    /// workers while this thread waits. On a rayon worker `f` runs as is,
    /// on one core (see the module's note).
    pub fn split<R>(&self, f: impl FnOnce() -> R) -> R {
        if rayon::current_thread_index().is_some() {
            return f();
        }
        let previous = SPLITTING.replace(Some(self.pool.clone()));
        let result = multithread_tract_scope(Executor::MultiThread(self.pool.clone()), f);
        SPLITTING.set(previous);
        result
    }
}

/// Runs `leaves` on the pool this thread is splitting over (inside
/// [`Cores::split`]) and returns true; false when there is none (the caller
/// then does the work itself). `leaves` must hand the pool only work that
/// waits for nothing.
pub(crate) fn on_splitting_pool(leaves: impl FnOnce() + Send) -> bool {
    match SPLITTING.with_borrow(|p| p.clone()) {
        Some(pool) => {
            pool.install(leaves);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_plain_thread_splits() {
        let cores = Cores::new(2, "test-split").unwrap();
        assert_eq!(
            tract_linalg::multithread::current_threading_panel_threshold(),
            SPLIT_PANEL_THRESHOLD,
            "the embedding's last stage would stay on one core"
        );
        assert!(cores.split(|| on_splitting_pool(|| {})), "a plain thread splits over the pool");
        assert!(!on_splitting_pool(|| {}), "outside split, nothing is split");
        // A rayon worker would run queued jobs while it waited: it must not split.
        let frames = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
        assert!(!frames.install(|| cores.split(|| on_splitting_pool(|| {}))), "a worker split its work");
        let leaves = std::sync::atomic::AtomicUsize::new(0);
        cores.split(|| {
            on_splitting_pool(|| {
                use rayon::prelude::*;
                (0..64).into_par_iter().for_each(|_| {
                    leaves.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                })
            })
        });
        assert_eq!(leaves.into_inner(), 64);
    }
}
