//! Worker threads for `--thread-pool-size=N`: serve chains off the vring thread.
//!
//! A plain locked queue with a condvar: an idle worker sleeps until a job arrives and is woken
//! only if one is idle. (A spinning channel was measured here: with more workers than cores,
//! idle workers' `sched_yield` loops cost ~15 % of 4 KiB random-write throughput.)

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use crate::device::backend::{complete, Chain, Handler};
use crate::device::vring::FsVring;
use crate::fuse::request::Verdict;

struct Job {
    chain: Chain,
    verdict: Verdict,
    vring: FsVring,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    /// The next job, sleeping while there is none; None once the pool is closed and empty.
    fn next(&self) -> Option<Job> {
        let mut q = self.queue.lock().unwrap();
        loop {
            if let Some(job) = q.jobs.pop_front() {
                return Some(job);
            }
            if q.closed {
                return None;
            }
            q.idle += 1;
            q = self.wake.wait(q).unwrap();
            q.idle -= 1;
        }
    }
}

/// A fixed set of threads serving chains; each completes and notifies its own requests.
pub struct Pool {
    shared: Arc<Shared>,
}

impl Pool {
    /// Starts `threads` workers serving through `handler`.
    pub fn new(threads: usize, handler: Arc<Handler>) -> io::Result<Self> {
        let shared = Arc::new(Shared::default());
        for i in 0..threads {
            let shared = shared.clone();
            let handler = handler.clone();
            thread::Builder::new()
                .name(format!("fs-worker-{i}"))
                .spawn(move || {
                    while let Some(job) = shared.next() {
                        let len = handler.serve(&job.chain, job.verdict);
                        complete(&job.vring, job.chain.head_index(), len);
                    }
                })?;
        }
        Ok(Pool { shared })
    }

    /// Queues a chain for the workers.
    pub fn submit(&self, chain: Chain, verdict: Verdict, vring: FsVring) {
        let job = Job {
            chain,
            verdict,
            vring,
        };
        let wake = {
            let mut q = self.shared.queue.lock().unwrap();
            q.jobs.push_back(job);
            // Wake one only if an idle worker is left over for this job.
            q.idle >= q.jobs.len()
        };
        if wake {
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Pool {
    /// Workers finish the queued jobs, then exit.
    fn drop(&mut self) {
        self.shared.queue.lock().unwrap().closed = true;
        self.shared.wake.notify_all();
    }
}
