//! The data workloads: sequential and random READs and WRITEs, checked against the pattern.

use super::*;

impl Lane {
    fn submit_data(&mut self, cx: &Ctx, w: Workload, s: usize, seq_off: &mut u64) -> Res<()> {
        let cfg = cx.cfg;
        let (bs, random) = match w {
            Workload::SeqRead | Workload::SeqWrite => (cfg.seq_bs, false),
            _ => (cfg.rand_bs, true),
        };
        let off = if random {
            (self.next_rand() % (cfg.file_size / bs as u64)) * bs as u64
        } else {
            let o = *seq_off;
            *seq_off = (o + bs as u64) % cfg.file_size;
            o
        };
        let unique = if matches!(w, Workload::SeqRead | Workload::RandRead) {
            let (nodeid, fh) = cx.files.read_file;
            let r = ReadIn {
                fh,
                offset: off,
                size: bs,
                ..Default::default()
            };
            self.submit(cx, s, Opcode::Read, nodeid, &[r.as_slice()], 0, bs)?
        } else {
            let (nodeid, fh) = cx.files.write_file;
            pattern::retag(self.data_mut(s, bs), WRITE_ID, off);
            let wi = WriteIn {
                fh,
                offset: off,
                size: bs,
                ..Default::default()
            };
            self.submit(
                cx,
                s,
                Opcode::Write,
                nodeid,
                &[wi.as_slice()],
                bs,
                size_of::<WriteOut>() as u32,
            )?
        };
        self.inflight[s] = Some(InFlight {
            unique,
            submitted: Instant::now(),
            offset: off,
            len: bs,
            step: MetaStep::Create,
        });
        Ok(())
    }

    pub(super) fn run_data(&mut self, cx: &Ctx, w: Workload, m: &mut Measure) -> Res<()> {
        // Each queue starts its sequential stream at its own share of the file.
        let n = cx.cfg.queues.max(1) as u64;
        let blocks = cx.cfg.file_size / cx.cfg.seq_bs as u64;
        let mut seq_off = (self.queue as u64 - 1) % n * (blocks / n) * cx.cfg.seq_bs as u64;
        let is_read = matches!(w, Workload::SeqRead | Workload::RandRead);
        loop {
            let now = Instant::now();
            if !cx.clock.ended(now) {
                while let Some(s) = self.free.pop() {
                    if let Err(e) = self.submit_data(cx, w, s, &mut seq_off) {
                        self.free.push(s);
                        return Err(e);
                    }
                }
                self.flush(cx)?;
            } else if self.free.len() == self.slots.len() {
                return Ok(());
            }
            // One completion (waiting), then whatever else is already there.
            let mut block = true;
            while let Some((s, inf, now, r)) = self.complete(cx, block)? {
                block = false;
                self.data_done(cx, w, is_read, m, s, inf, now, r)?;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn data_done(
        &mut self,
        cx: &Ctx,
        w: Workload,
        is_read: bool,
        m: &mut Measure,
        s: usize,
        inf: InFlight,
        now: Instant,
        r: Result<u32, String>,
    ) -> Res<()> {
        {
            match r {
                Err(e) => m.error(false, || format!("{} at {}: {e}", w.name(), inf.offset)),
                Ok(n) if is_read => {
                    if n != inf.len {
                        m.error(false, || {
                            format!(
                                "{} at {}: {n} bytes, asked {}",
                                w.name(),
                                inf.offset,
                                inf.len
                            )
                        });
                    } else {
                        self.reads += 1;
                        let every = cx.cfg.verify_every as u64;
                        let bad = if every == 0 {
                            None
                        } else if self.reads.is_multiple_of(every) {
                            pattern::verify(self.body(s, n), READ_ID, inf.offset)
                        } else {
                            pattern::verify_tags(self.body(s, n), READ_ID, inf.offset)
                        };
                        if let Some(i) = bad {
                            m.error(true, || {
                                format!(
                                    "verification error: {}/{READ_FILE} byte at offset {} differs from the pattern",
                                    DIR,
                                    inf.offset + i as u64
                                )
                            });
                        } else {
                            m.done(inf.submitted, now, n as u64);
                        }
                    }
                }
                Ok(_) => {
                    let wo: WriteOut = parse_obj(self.body(s, size_of::<WriteOut>() as u32))?;
                    if wo.size != inf.len {
                        m.error(false, || {
                            format!(
                                "{} at {}: wrote {}, asked {}",
                                w.name(),
                                inf.offset,
                                wo.size,
                                inf.len
                            )
                        });
                    } else {
                        m.done(inf.submitted, now, inf.len as u64);
                    }
                }
            }
        }
        Ok(())
    }
}
