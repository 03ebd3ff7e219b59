//! Worker threads for `--thread-pool-size=N`: serve chains off the vring thread.

use std::io;
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{unbounded, Sender};

use crate::backend::{complete, notify, Chain, Handler};
use crate::request::Verdict;
use crate::vring::FsVring;

struct Job {
    chain: Chain,
    verdict: Verdict,
    vring: FsVring,
}

/// A fixed set of threads serving chains; each completes and notifies its own requests.
pub struct Pool {
    tx: Sender<Job>,
}

impl Pool {
    /// Starts `threads` workers serving through `handler`.
    pub fn new(threads: usize, handler: Arc<Handler>) -> io::Result<Self> {
        let (tx, rx) = unbounded::<Job>();
        for i in 0..threads {
            let rx = rx.clone();
            let handler = handler.clone();
            thread::Builder::new()
                .name(format!("fs-worker-{i}"))
                .spawn(move || {
                    for job in rx {
                        let len = handler.serve(&job.chain, job.verdict);
                        complete(&job.vring, job.chain.head_index(), len);
                        notify(&job.vring);
                    }
                })?;
        }
        Ok(Pool { tx })
    }

    /// Queues a chain for the workers.
    pub fn submit(&self, chain: Chain, verdict: Verdict, vring: FsVring) {
        let job = Job {
            chain,
            verdict,
            vring,
        };
        if let Err(e) = self.tx.send(job) {
            // Workers only stop when the pool is dropped; serve inline rather than lose it.
            let job = e.into_inner();
            log::error!(
                "worker pool gone; request {} dropped",
                job.chain.head_index()
            );
            complete(&job.vring, job.chain.head_index(), 0);
        }
    }
}
