//! [`FuseSession`]: a typed FUSE session over a [`Frontend`]; submitting requests, waiting
//! for replies, pipelining. The typed operations are in [`ops`].

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use vm_memory::ByteValued;

use super::*;
use crate::error::{Error, Result};
use crate::vhost::{Completion, ConnectOptions, Frontend, HIPRIO_QUEUE, REQUEST_QUEUE};
use crate::virtqueue::{ChainData, Token, VIRTQ_DESC_F_WRITE};

mod ops;

/// A submitted request not yet claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pending {
    /// Chain token.
    pub token: Token,
    /// FUSE unique.
    pub unique: u64,
    /// FUSE opcode.
    pub opcode: u32,
}

/// Typed FUSE session over a [`Frontend`]. Nodeid 1 ([`ROOT_ID`]) is the root.
///
/// Synchronous helpers (`lookup`, `read`, ...) send on the current request queue (queue 1
/// unless [`set_request_queue`](Self::set_request_queue) picked another) and wait; for
/// pipelining use [`submit`](Self::submit) / [`wait_any_reply`](Self::wait_any_reply), and
/// [`wait_any_reply_on`](Self::wait_any_reply_on) with several request queues.
pub struct FuseSession {
    fe: Frontend,
    unique: u64,
    uid: u32,
    gid: u32,
    pid: u32,
    compact: bool,
    init_out: Option<InitOut>,
    pending: HashMap<Token, Pending>,
    /// The request queue `submit` and the synchronous helpers use.
    request_queue: usize,
}

impl std::fmt::Debug for FuseSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FuseSession")
            .field("fe", &self.fe)
            .field("unique", &self.unique)
            .field("init_out", &self.init_out)
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// Error if the daemon rejected it, otherwise `()`.
fn unit(r: Reply) -> Result<()> {
    r.into_result().map(|_| ())
}

impl FuseSession {
    /// Wrap a connected frontend (INIT not yet sent).
    pub fn new(fe: Frontend) -> Self {
        FuseSession {
            fe,
            unique: 0,
            uid: 0,
            gid: 0,
            pid: 1,
            compact: false,
            init_out: None,
            pending: HashMap::new(),
            request_queue: REQUEST_QUEUE,
        }
    }

    /// Connect with default options (INIT not yet sent).
    pub fn connect(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::new(Frontend::connect(path)?))
    }

    /// Connect with `opts` (INIT not yet sent).
    pub fn connect_with(path: impl AsRef<Path>, opts: &ConnectOptions) -> Result<Self> {
        Ok(Self::new(Frontend::connect_with(path, opts)?))
    }

    /// The frontend, e.g. for raw chains on the same connection.
    pub fn frontend(&mut self) -> &mut Frontend {
        &mut self.fe
    }

    /// Give the frontend back.
    pub fn into_frontend(self) -> Frontend {
        self.fe
    }

    /// uid/gid/pid put in every InHeader (default 0/0/1).
    pub fn set_creds(&mut self, uid: u32, gid: u32, pid: u32) {
        (self.uid, self.gid, self.pid) = (uid, gid, pid);
    }

    /// Use 1 readable + 1 writable descriptor per request instead of the kernel-like
    /// split (fewer descriptors for deep queues).
    pub fn set_compact_chains(&mut self, on: bool) {
        self.compact = on;
    }

    /// The daemon's INIT reply, once [`init`](Self::init) succeeded.
    pub fn init_out(&self) -> Option<&InitOut> {
        self.init_out.as_ref()
    }

    /// Largest WRITE payload the daemon accepts (after INIT; 4 KiB before).
    pub fn max_write(&self) -> u32 {
        self.init_out.map(|i| i.max_write).unwrap_or(4096)
    }

    /// Next request unique (also useful to build raw requests).
    pub fn next_unique(&mut self) -> u64 {
        self.unique += 1;
        self.unique
    }

    // ---- generic submit / wait ---------------------------------------------------------

    /// Submit a request on queue `q`: InHeader + `args` readable, and (when
    /// `reply_size` is `Some(n)`) an OutHeader plus `n` bytes of body writable.
    /// `None` makes a no-reply chain (FORGET style).
    pub fn submit_on(
        &mut self,
        q: usize,
        opcode: u32,
        nodeid: u64,
        args: &[&[u8]],
        reply_size: Option<usize>,
    ) -> Result<Pending> {
        let unique = self.next_unique();
        let args_len: usize = args.iter().map(|a| a.len()).sum();
        let in_len = IN_HEADER_LEN + args_len;
        let header = InHeader {
            len: in_len as u32,
            opcode,
            unique,
            nodeid,
            uid: self.uid,
            gid: self.gid,
            pid: self.pid,
            padding: 0,
        };
        let in_buf = self.fe.alloc(in_len)?;
        let out = match reply_size {
            Some(n) => match self.fe.alloc(OUT_HEADER_LEN + n) {
                Ok(b) => Some((b, n)),
                Err(e) => {
                    self.fe.free(in_buf);
                    return Err(e);
                }
            },
            None => None,
        };
        let r = self.fill_and_submit(q, in_buf, in_len, &header, args, out);
        if r.is_err() {
            self.fe.free(in_buf);
            if let Some((b, _)) = out {
                self.fe.free(b);
            }
        }
        let token = r?;
        let p = Pending {
            token,
            unique,
            opcode,
        };
        self.pending.insert(token, p);
        Ok(p)
    }

    fn fill_and_submit(
        &mut self,
        q: usize,
        in_buf: crate::memory::GuestBuf,
        in_len: usize,
        header: &InHeader,
        args: &[&[u8]],
        out: Option<(crate::memory::GuestBuf, usize)>,
    ) -> Result<Token> {
        let mem = self.fe.mem();
        let mut descs: Vec<(u64, u32, u16)> = Vec::with_capacity(args.len() + 3);
        mem.write(in_buf.addr, header.as_slice())?;
        descs.push((in_buf.addr, IN_HEADER_LEN as u32, 0));
        let mut off = IN_HEADER_LEN as u64;
        for a in args.iter().filter(|a| !a.is_empty()) {
            mem.write(in_buf.addr + off, a)?;
            descs.push((in_buf.addr + off, a.len() as u32, 0));
            off += a.len() as u64;
        }
        if self.compact {
            descs.clear();
            descs.push((in_buf.addr, in_len as u32, 0));
        }
        let mut data = ChainData {
            bufs: vec![in_buf],
            writable: Vec::new(),
        };
        if let Some((b, n)) = out {
            data.bufs.push(b);
            if self.compact || n == 0 {
                let l = (OUT_HEADER_LEN + n) as u32;
                descs.push((b.addr, l, VIRTQ_DESC_F_WRITE));
                data.writable.push((b.addr, l));
            } else {
                let body = b.addr + OUT_HEADER_LEN as u64;
                descs.push((b.addr, OUT_HEADER_LEN as u32, VIRTQ_DESC_F_WRITE));
                descs.push((body, n as u32, VIRTQ_DESC_F_WRITE));
                data.writable.push((b.addr, OUT_HEADER_LEN as u32));
                data.writable.push((body, n as u32));
            }
        }
        self.fe.submit(q, &descs, data)
    }

    /// [`submit_on`](Self::submit_on) the request queue, expecting a reply body of up to
    /// `reply_size` bytes.
    pub fn submit(
        &mut self,
        opcode: u32,
        nodeid: u64,
        args: &[&[u8]],
        reply_size: usize,
    ) -> Result<Pending> {
        self.submit_on(self.request_queue, opcode, nodeid, args, Some(reply_size))
    }

    /// Sends what follows (`submit`, `submit_write`, `lookup`, ...) on request queue `q`
    /// (1 and up; the frontend must have set it up).
    pub fn set_request_queue(&mut self, q: usize) -> Result<()> {
        if q == HIPRIO_QUEUE || q >= self.fe.num_queues() {
            return Err(Error::InvalidArgument(format!("no request queue {q}")));
        }
        self.request_queue = q;
        Ok(())
    }

    /// The request queue `submit` uses.
    pub fn request_queue(&self) -> usize {
        self.request_queue
    }

    fn check(&mut self, p: Pending, c: Completion) -> Result<Reply> {
        self.pending.remove(&p.token);
        parse_reply_owned(c, p.unique)
    }

    /// Wait for the reply to `p` (up to `timeout`). On timeout `p` stays pending: wait
    /// again or [`abandon`](Self::abandon) it.
    pub fn wait_reply_timeout(&mut self, p: Pending, timeout: Duration) -> Result<Reply> {
        let c = self.fe.wait(p.token, timeout)?;
        self.check(p, c)
    }

    /// Wait for the reply to `p` with the default timeout.
    pub fn wait_reply(&mut self, p: Pending) -> Result<Reply> {
        let t = self.fe.timeout();
        self.wait_reply_timeout(p, t)
    }

    /// Wait for whichever pending request-queue reply comes first. The outer error is a
    /// transport error (timeout, bad used id); the inner result is that request's reply.
    pub fn wait_any_reply(&mut self) -> Result<(Pending, Result<Reply>)> {
        self.wait_any_reply_on(self.request_queue)
    }

    /// [`wait_any_reply`](Self::wait_any_reply) for a reply on queue `q`: a request sent on
    /// another queue is never taken from this one.
    pub fn wait_any_reply_on(&mut self, q: usize) -> Result<(Pending, Result<Reply>)> {
        if self.pending.is_empty() {
            return Err(Error::InvalidArgument("no request pending".into()));
        }
        let t = self.fe.timeout();
        let pending = &self.pending;
        let c = self
            .fe
            .wait_any_matching(q, t, |tok| pending.contains_key(tok))?;
        let p = self
            .pending
            .remove(&c.token)
            .ok_or(Error::UnknownToken(c.token))?;
        let r = parse_reply_owned(c, p.unique);
        Ok((p, r))
    }

    /// Number of submitted, unclaimed requests.
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Give up on `p` (its buffers are freed if the daemon ever returns it).
    pub fn abandon(&mut self, p: Pending) {
        self.pending.remove(&p.token);
        self.fe.abandon(p.token);
    }

    /// Send a request on the request queue and wait; the reply body on success.
    pub fn request(
        &mut self,
        opcode: u32,
        nodeid: u64,
        args: &[&[u8]],
        reply_size: usize,
    ) -> Result<Vec<u8>> {
        self.call(opcode, nodeid, args, reply_size)?.into_result()
    }

    /// Send a request and wait; the checked reply (error replies included).
    pub fn call(
        &mut self,
        opcode: u32,
        nodeid: u64,
        args: &[&[u8]],
        reply_size: usize,
    ) -> Result<Reply> {
        let p = self.submit(opcode, nodeid, args, reply_size)?;
        let r = self.wait_reply(p);
        if matches!(r, Err(Error::Timeout { .. })) {
            self.abandon(p);
        }
        r
    }

    fn typed<T: ByteValued + Default>(
        &mut self,
        opcode: Opcode,
        nodeid: u64,
        args: &[&[u8]],
    ) -> Result<T> {
        let body = self.request(opcode as u32, nodeid, args, size_of::<T>())?;
        parse_obj(&body)
    }

    fn no_reply(&mut self, opcode: Opcode, nodeid: u64, args: &[&[u8]]) -> Result<()> {
        let p = self.submit_on(HIPRIO_QUEUE, opcode as u32, nodeid, args, None)?;
        let t = self.fe.timeout();
        let r = self.fe.wait(p.token, t);
        self.pending.remove(&p.token);
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                self.fe.abandon(p.token);
                Err(e)
            }
        }
    }
}
