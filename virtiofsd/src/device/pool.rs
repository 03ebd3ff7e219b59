//! Worker threads for `--thread-pool-size=N`: run jobs (the backend's: serve and complete a
//! chain) off the vring thread. Generic over the job, so it knows nothing of what it runs.
//!
//! A plain locked queue with a condvar: an idle worker sleeps until a job arrives and is woken
//! only if one is idle. (A spinning channel was measured here: with more workers than cores,
//! idle workers' `sched_yield` loops cost ~15 % of 4 KiB random-write throughput.)

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

struct Queue<J> {
    jobs: VecDeque<J>,
    idle: usize,
    closed: bool,
}

struct Shared<J> {
    queue: Mutex<Queue<J>>,
    wake: Condvar,
}

impl<J> Shared<J> {
    /// The next job, sleeping while there is none; None once the pool is closed and empty.
    fn next(&self) -> Option<J> {
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

/// A fixed set of threads running jobs of type `J`, each with the same function.
pub struct Pool<J> {
    shared: Arc<Shared<J>>,
}

impl<J: Send + 'static> Pool<J> {
    /// Starts `threads` workers, each running `run` on the jobs it takes.
    pub fn new<F>(threads: usize, run: F) -> io::Result<Self>
    where
        F: Fn(J) + Send + Sync + 'static,
    {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                idle: 0,
                closed: false,
            }),
            wake: Condvar::new(),
        });
        let run = Arc::new(run);
        for i in 0..threads {
            let shared = shared.clone();
            let run = run.clone();
            thread::Builder::new()
                .name(format!("fs-worker-{i}"))
                .spawn(move || {
                    while let Some(job) = shared.next() {
                        run(job);
                    }
                })?;
        }
        Ok(Pool { shared })
    }

    /// Queues a job for the workers.
    pub fn submit(&self, job: J) {
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

impl<J> Drop for Pool<J> {
    /// Workers finish the queued jobs, then exit.
    fn drop(&mut self) {
        self.shared.queue.lock().unwrap().closed = true;
        self.shared.wake.notify_all();
    }
}
