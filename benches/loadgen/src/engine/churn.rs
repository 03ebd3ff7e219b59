//! The `churn` workload: rounds of [`Config::churn_files`] new files, all alive at once
//! (MKNOD, one lookup each), then forgotten in BATCH_FORGETs on the hiprio queue and
//! unlinked. Every name is new, so a daemon that keeps something per file it has seen grows
//! with every round; MKNODs and UNLINKs are the counted requests. A round is always
//! completed (after the measured window, uncounted), so every run has had exactly
//! `churn_files` files alive at once.

use super::*;

/// Nodeids forgotten per BATCH_FORGET.
const FORGET_BATCH: usize = 500;

impl Lane {
    fn churn_name(idx: u64) -> Vec<u8> {
        cstr(format!("c{idx}").as_bytes())
    }

    /// Submit a MKNOD (`create`) or an UNLINK of file `idx` in slot `s`.
    fn submit_churn(&mut self, cx: &Ctx, s: usize, create: bool, idx: u64) -> Res<()> {
        let dir = cx.files.meta_dir;
        let name = Self::churn_name(idx);
        let (unique, step) = if create {
            let mk = MknodIn {
                mode: libc::S_IFREG | 0o644,
                rdev: 0,
                umask: 0,
                padding: 0,
            };
            let entry = size_of::<EntryOut>() as u32;
            let u = self.submit(cx, s, Opcode::Mknod, dir, &[mk.as_slice(), &name], 0, entry)?;
            (u, MetaStep::Create)
        } else {
            let u = self.submit(cx, s, Opcode::Unlink, dir, &[&name], 0, 0)?;
            (u, MetaStep::Unlink)
        };
        self.inflight[s] = Some(InFlight {
            unique,
            submitted: Instant::now(),
            offset: idx,
            len: 0,
            step,
        });
        Ok(())
    }

    /// One phase over `todo` (file indices): MKNOD each (`create`, collecting the nodeids
    /// into `made`) or UNLINK each, `queue_depth` in flight.
    fn churn_phase(
        &mut self,
        cx: &Ctx,
        m: &mut Measure,
        create: bool,
        todo: &[u64],
        made: &mut Vec<(u64, u64)>,
    ) -> Res<()> {
        let mut next = 0;
        let n = self.slots.len();
        loop {
            while next < todo.len() {
                let Some(s) = self.free.pop() else { break };
                if let Err(e) = self.submit_churn(cx, s, create, todo[next]) {
                    self.free.push(s);
                    return Err(e);
                }
                next += 1;
            }
            self.flush(cx)?;
            if self.free.len() == n && next == todo.len() {
                return Ok(());
            }
            let mut block = true;
            while let Some((s, inf, now, r)) = self.complete(cx, block)? {
                block = false;
                let what = if create { "MKNOD" } else { "UNLINK" };
                match r {
                    Err(e) => m.error(false, || format!("churn {what} c{}: {e}", inf.offset)),
                    Ok(_) => {
                        m.done(inf.submitted, now, 0);
                        if create {
                            let e: EntryOut =
                                parse_obj(self.body(s, size_of::<EntryOut>() as u32))?;
                            made.push((inf.offset, e.nodeid));
                        }
                    }
                }
            }
        }
    }

    pub(super) fn run_churn(&mut self, cx: &Ctx, m: &mut Measure) -> Res<()> {
        let per_round = cx.cfg.churn_files.max(1);
        // Fresh names per run (a previous run on the same share may have left some).
        let mut base = (self.next_rand() >> 24) << 24;
        let mut made = Vec::with_capacity(per_round as usize);
        loop {
            let todo: Vec<u64> = (base..base + per_round).collect();
            base += per_round;
            made.clear();
            self.churn_phase(cx, m, true, &todo, &mut made)?;
            let forgets: Vec<(u64, u64)> = made.iter().map(|&(_, id)| (id, 1)).collect();
            for b in forgets.chunks(FORGET_BATCH) {
                cx.lock()?.batch_forget(b)?;
            }
            let gone: Vec<u64> = made.iter().map(|&(i, _)| i).collect();
            self.churn_phase(cx, m, false, &gone, &mut Vec::new())?;
            if cx.clock.ended(Instant::now()) {
                return Ok(());
            }
        }
    }
}
