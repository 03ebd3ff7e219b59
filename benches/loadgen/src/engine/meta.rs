//! The metadata workloads: `meta` (CREATE, GETATTR, LOOKUP, RELEASE, UNLINK cycles) and
//! `churn` (many files alive at once, then forgotten and unlinked).

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MetaStep {
    Create,
    Getattr,
    Lookup,
    Release,
    Unlink,
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct MetaState {
    pub(super) iter: u64,
    pub(super) nodeid: u64,
    pub(super) fh: u64,
}

impl Lane {
    fn meta_name(&self, s: usize, iter: u64) -> Vec<u8> {
        cstr(format!("m{}.{s}-{iter}", self.queue).as_bytes())
    }

    fn submit_meta(&mut self, cx: &Ctx, s: usize, step: MetaStep, st: &MetaState) -> Res<()> {
        let dir = cx.files.meta_dir;
        let name = self.meta_name(s, st.iter);
        let entry = size_of::<EntryOut>() as u32;
        let unique = match step {
            MetaStep::Create => {
                let c = CreateIn {
                    flags: libc::O_RDWR as u32,
                    mode: 0o644,
                    umask: 0,
                    fuse_flags: 0,
                };
                let reply = entry + size_of::<OpenOut>() as u32;
                self.submit(cx, s, Opcode::Create, dir, &[c.as_slice(), &name], 0, reply)?
            }
            MetaStep::Getattr => {
                let g = GetattrIn::default();
                let reply = size_of::<vufs_frontend::fuse::AttrOut>() as u32;
                self.submit(cx, s, Opcode::Getattr, st.nodeid, &[g.as_slice()], 0, reply)?
            }
            MetaStep::Lookup => self.submit(cx, s, Opcode::Lookup, dir, &[&name], 0, entry)?,
            MetaStep::Release => {
                let r = ReleaseIn {
                    fh: st.fh,
                    flags: libc::O_RDWR as u32,
                    ..Default::default()
                };
                self.submit(cx, s, Opcode::Release, st.nodeid, &[r.as_slice()], 0, 0)?
            }
            MetaStep::Unlink => self.submit(cx, s, Opcode::Unlink, dir, &[&name], 0, 0)?,
        };
        self.inflight[s] = Some(InFlight {
            unique,
            submitted: Instant::now(),
            offset: 0,
            len: 0,
            step,
        });
        Ok(())
    }

    pub(super) fn run_meta(&mut self, cx: &Ctx, m: &mut Measure) -> Res<()> {
        let n = self.slots.len();
        let mut st = vec![MetaState::default(); n];
        let mut forgets: Vec<(u64, u64)> = Vec::new();
        let mut iter = 0u64;
        // Fresh names per run (a previous run on the same share may have left some).
        let base = (self.next_rand() >> 20) << 20;
        while let Some(s) = self.free.pop() {
            st[s].iter = base + iter;
            iter += 1;
            self.submit_meta(cx, s, MetaStep::Create, &st[s])?;
        }
        self.flush(cx)?;
        while self.free.len() < n {
            let mut block = true;
            while let Some((s, inf, now, r)) = self.complete(cx, block)? {
                block = false;
                self.meta_done(
                    cx,
                    m,
                    &mut st,
                    &mut forgets,
                    &mut iter,
                    base,
                    s,
                    inf,
                    now,
                    r,
                )?;
            }
            self.flush(cx)?;
        }
        if !forgets.is_empty() {
            cx.lock()?.batch_forget(&forgets)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn meta_done(
        &mut self,
        cx: &Ctx,
        m: &mut Measure,
        st: &mut [MetaState],
        forgets: &mut Vec<(u64, u64)>,
        iter: &mut u64,
        base: u64,
        s: usize,
        inf: InFlight,
        now: Instant,
        r: Result<u32, String>,
    ) -> Res<()> {
        {
            let next = match r {
                Err(e) => {
                    m.error(false, || {
                        format!(
                            "meta {:?} m{}.{s}-{}: {e}",
                            inf.step, self.queue, st[s].iter
                        )
                    });
                    // Start over with a new name (the old one may be left behind).
                    None
                }
                Ok(_) => {
                    m.done(inf.submitted, now, 0);
                    match inf.step {
                        MetaStep::Create => {
                            let body =
                                self.body(s, (size_of::<EntryOut>() + size_of::<OpenOut>()) as u32);
                            let e: EntryOut = parse_obj(body)?;
                            let o: OpenOut = parse_obj(&body[size_of::<EntryOut>()..])?;
                            st[s].nodeid = e.nodeid;
                            st[s].fh = o.fh;
                            Some(MetaStep::Getattr)
                        }
                        MetaStep::Getattr => Some(MetaStep::Lookup),
                        MetaStep::Lookup => Some(MetaStep::Release),
                        MetaStep::Release => Some(MetaStep::Unlink),
                        MetaStep::Unlink => {
                            forgets.push((st[s].nodeid, 2));
                            None
                        }
                    }
                }
            };
            if forgets.len() >= 64 {
                self.flush(cx)?;
                cx.lock()?.batch_forget(forgets)?;
                forgets.clear();
            }
            match next {
                Some(step) => self.submit_meta(cx, s, step, &st[s])?,
                None if !cx.clock.ended(Instant::now()) => {
                    st[s] = MetaState {
                        iter: base + *iter,
                        ..Default::default()
                    };
                    *iter += 1;
                    self.submit_meta(cx, s, MetaStep::Create, &st[s])?;
                }
                None => {}
            }
            // `complete` put the slot on the free list; take it back if we resubmitted.
            if self.inflight[s].is_some() {
                if let Some(p) = self.free.iter().position(|&x| x == s) {
                    self.free.swap_remove(p);
                }
            }
        }
        Ok(())
    }
}
