//! The engine's worker pool, safe across `fork()`.
//!
//! A forked child inherits the pool's bookkeeping but none of its threads, so the first job it
//! sends would wait forever (multiprocessing's fork context, gunicorn --preload). The pool
//! remembers the pid that built it; a call from another pid builds a fresh pool first.
//!
//! Every worker sets flush-to-zero and denormals-are-zero when it starts (`kernels::ftz`): all
//! of the engine's arithmetic runs on these threads, so a subnormal cannot slow it down.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, TryLockError};

use rayon::ThreadPool;

use crate::error::{Error, Result};

pub(crate) struct Pool {
    threads: usize,
    /// The pid whose threads `pool` holds.
    owner: AtomicU32,
    pool: Mutex<Arc<ThreadPool>>,
}

fn build(threads: usize) -> Result<ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("irt_fast-{i}"))
        .start_handler(|_| {
            crate::kernels::ftz::set_flush_to_zero();
        })
        .build()
        .map_err(|e| Error::Input(format!("cannot start {threads} threads: {e}")))
}

impl Pool {
    pub fn new(threads: usize) -> Result<Pool> {
        Ok(Pool {
            threads,
            owner: AtomicU32::new(std::process::id()),
            pool: Mutex::new(Arc::new(build(threads)?)),
        })
    }

    /// The pool of this process, rebuilt once after a fork.
    pub fn get(&self) -> Result<Arc<ThreadPool>> {
        let pid = std::process::id();
        if self.owner.load(Ordering::Acquire) == pid {
            let g = self.pool.lock().unwrap_or_else(|e| e.into_inner());
            return Ok(Arc::clone(&g));
        }
        let fresh = Arc::new(build(self.threads)?);
        match self.pool.try_lock() {
            // another thread of this process got here first
            Ok(g) if self.owner.load(Ordering::Acquire) == pid => return Ok(Arc::clone(&g)),
            Ok(mut g) => self.adopt(&mut g, &fresh, pid),
            Err(TryLockError::Poisoned(e)) => self.adopt(&mut e.into_inner(), &fresh, pid),
            // Held at fork time by a thread that does not exist in this process: it will
            // never be released, so this call runs on a pool of its own.
            Err(TryLockError::WouldBlock) => {}
        }
        Ok(fresh)
    }

    fn adopt(&self, slot: &mut Arc<ThreadPool>, fresh: &Arc<ThreadPool>, pid: u32) {
        let old = std::mem::replace(slot, Arc::clone(fresh));
        // The parent's pool state was copied mid-flight; dropping it could wait on threads
        // that are not here. Leak it (once per fork).
        std::mem::forget(old);
        self.owner.store(pid, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::ftz::{flush_flags, mxcsr, DAZ, FTZ};

    #[test]
    fn every_worker_flushes_subnormals_to_zero() {
        let pool = Pool::new(3).unwrap().get().unwrap();
        let flags: Vec<Option<u32>> = pool.broadcast(|_| mxcsr());
        assert_eq!(flags.len(), 3);
        let want = flush_flags();
        for f in flags.into_iter().flatten() {
            assert_ne!(want & FTZ, 0);
            assert_eq!(
                f & want,
                want,
                "MXCSR {f:#x} on a worker, expected {want:#x} set"
            );
        }
        if cfg!(target_arch = "x86_64") {
            assert_ne!(want & DAZ, 0, "this CPU does not take DAZ"); // every x86-64 we run on does
        }
        // and the arithmetic done there: 1e-40 would be subnormal
        let p = pool.install(|| std::hint::black_box(1e-20f32) * std::hint::black_box(1e-20f32));
        if mxcsr().is_some() {
            assert_eq!(p, 0.0);
        }
    }
}
