//! A persistent pool of worker threads for splitting one kernel call (a mat-vec's rows,
//! a mat-mat's tokens) across cores with no allocation per call.
//!
//! Decode makes about a hundred kernel calls per token, each a few microseconds long, so
//! waking workers through the OS (a condvar: tens of microseconds) would cost more than
//! the work. Workers therefore spin on a shared claim word for a short while after each
//! job, and only park (std's thread::park) after about a millisecond without work, so an
//! idle model costs no CPU.
//!
//! Parts are claimed, not assigned: the caller and the workers take the next unclaimed
//! part until none is left. On a busy machine, where a worker may be descheduled, the
//! caller simply runs that worker's parts itself instead of waiting for it to wake.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, TryLockError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How long a worker spins for the next job before parking.
const SPIN_FOR: Duration = Duration::from_millis(1);

type Job<'a> = &'a (dyn Fn(usize) + Sync);

/// The claim word: generation (32 bits) | part count (16) | next part (16).
fn pack(generation: u64, parts: usize, next: usize) -> u64 {
    (generation << 32) | ((parts as u64) << 16) | next as u64
}
fn unpack(c: u64) -> (u64, usize, usize) {
    (
        c >> 32,
        ((c >> 16) & 0xffff) as usize,
        (c & 0xffff) as usize,
    )
}

struct Shared {
    claim: AtomicU64,
    /// Points at the current job's `Job` (on the dispatcher's stack).
    job: AtomicPtr<()>,
    /// Parts finished in the current generation.
    done: AtomicUsize,
    /// A part's job panicked.
    panicked: AtomicBool,
    shutdown: AtomicBool,
    /// Worker i parked (or about to park).
    parked: Vec<AtomicBool>,
}

/// A fixed set of worker threads; [`Pool::run`] calls `f(i)` for i in 0..parts, spread
/// over the calling thread and the workers.
pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    lock: Mutex<u64>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} threads)", self.threads())
    }
}

/// Take and run parts of generation `generation` until none is left. Returns after the
/// last part this thread took has finished.
fn run_parts(s: &Shared, generation: u64) {
    loop {
        let c = s.claim.load(Ordering::Acquire);
        let (g, parts, next) = unpack(c);
        if g != generation || next >= parts {
            return;
        }
        if s.claim
            .compare_exchange_weak(c, c + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue;
        }
        // SAFETY: we hold an unfinished part of `generation`, so its dispatcher is still
        // inside `run` (it returns only when every part is done) and the `Job` that `job`
        // points at is alive; `job` was stored before the claim word was published and is
        // replaced only by a later dispatch, which cannot start before `run` returns.
        let f: Job<'_> = unsafe { *(s.job.load(Ordering::Acquire) as *const Job<'_>) };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(next))).is_err() {
            s.panicked.store(true, Ordering::SeqCst);
        }
        s.done.fetch_add(1, Ordering::AcqRel);
    }
}

impl Pool {
    /// A pool running jobs on `threads` threads in all (the caller's plus threads - 1
    /// workers).
    pub fn new(threads: usize) -> Pool {
        let n_workers = threads.max(1) - 1;
        let shared = Arc::new(Shared {
            claim: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            parked: (0..n_workers).map(|_| AtomicBool::new(false)).collect(),
        });
        let workers = (0..n_workers)
            .map(|i| {
                let s = Arc::clone(&shared);
                thread::Builder::new()
                    .name(format!("mamba-cpu-{}", i + 1))
                    .spawn(move || worker(&s, i))
                    .expect("spawning a kernel worker thread")
            })
            .collect();
        Pool {
            shared,
            workers,
            lock: Mutex::new(0),
        }
    }

    /// Threads in all (the caller's included).
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Call `f(i)` for every i in 0..parts (at most 65535), in parallel, and return when
    /// all are done. If another thread is using the pool, runs every part on this thread.
    pub fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        assert!(parts < 1 << 16, "too many parts");
        let guard = if self.workers.is_empty() {
            None
        } else {
            match self.lock.try_lock() {
                Ok(g) => Some(g),
                // A part panicked in an earlier call; the pool itself is consistent (every
                // part of that call had finished), so keep using it.
                Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            }
        };
        let Some(mut generation) = guard else {
            (0..parts).for_each(f);
            return;
        };
        let s = &*self.shared;
        *generation = (*generation + 1) & 0xffff_ffff;
        let g = *generation;
        let job: Job<'_> = f;
        s.job
            .store(&job as *const Job<'_> as *mut (), Ordering::Relaxed);
        s.done.store(0, Ordering::Relaxed);
        s.claim.store(pack(g, parts, 0), Ordering::SeqCst);
        for (i, p) in s.parked.iter().enumerate() {
            if p.load(Ordering::SeqCst) {
                self.workers[i].thread().unpark();
            }
        }
        run_parts(s, g);
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) < parts {
            spins = spins.wrapping_add(1);
            if spins % 256 == 0 {
                thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        if s.panicked.swap(false, Ordering::SeqCst) {
            panic!("a kernel part panicked on a worker thread");
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for w in &self.workers {
            w.thread().unpark();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(s: &Shared, i: usize) {
    let mut seen = 0u64;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        let g = loop {
            if s.shutdown.load(Ordering::Acquire) {
                return;
            }
            let (g, parts, next) = unpack(s.claim.load(Ordering::Acquire));
            if g != seen && next < parts {
                break g;
            }
            spins = spins.wrapping_add(1);
            if spins % 1024 != 0 || start.elapsed() < SPIN_FOR {
                std::hint::spin_loop();
                continue;
            }
            // Publish "parked" before re-checking, so a dispatcher that publishes a job
            // after our check sees the flag and unparks us.
            s.parked[i].store(true, Ordering::SeqCst);
            let (g2, parts2, next2) = unpack(s.claim.load(Ordering::SeqCst));
            if (g2 == seen || next2 >= parts2) && !s.shutdown.load(Ordering::SeqCst) {
                thread::park_timeout(Duration::from_millis(100));
            }
            s.parked[i].store(false, Ordering::SeqCst);
        };
        seen = g;
        run_parts(s, g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_runs_once() {
        let p = Pool::new(3);
        for n in [1usize, 2, 3, 7, 64] {
            for _ in 0..200 {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                p.run(n, &|i| {
                    hits[i].fetch_add(1, Ordering::SeqCst);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::SeqCst) == 1));
            }
        }
    }

    #[test]
    fn survives_a_panicking_part() {
        let p = Pool::new(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            p.run(4, &|i| assert!(i != 3, "part 3 fails"));
        }));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        p.run(4, &|_| {
            n.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(n.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn wakes_after_parking() {
        let p = Pool::new(2);
        std::thread::sleep(SPIN_FOR * 5);
        let n = AtomicUsize::new(0);
        p.run(4, &|_| {
            n.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(n.load(Ordering::SeqCst), 4);
    }
}
