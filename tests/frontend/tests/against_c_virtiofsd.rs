//! Drive QEMU's C virtiofsd (Debian's qemu-system-x86 ships it) with the frontend: an
//! independent implementation, so the frontend's encoding is not just checked against our own
//! daemon. Needs root (`-o sandbox=chroot`); fails loudly when it cannot run.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vufs_frontend::fuse::{Opcode, IN_HEADER_LEN};
use vufs_frontend::{
    encode_request, ConnectOptions, Desc, Error, FuseSession, Link, XattrReply, HIPRIO_QUEUE,
    REQUEST_QUEUE, ROOT_ID, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_WRITE,
};

const C_VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";

struct CDaemon {
    child: Child,
    dir: PathBuf,
    share: PathBuf,
    sock: PathBuf,
}

impl CDaemon {
    fn start(name: &str) -> CDaemon {
        assert!(
            std::path::Path::new(C_VIRTIOFSD).exists(),
            "{C_VIRTIOFSD} is missing: install the Debian package qemu-system-x86 \
             (scripts/test.sh does)"
        );
        // SAFETY: geteuid has no preconditions.
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "the C virtiofsd needs root here"
        );
        let dir = std::env::temp_dir().join(format!("vufs-fe-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let share = dir.join("share");
        std::fs::create_dir_all(&share).unwrap();
        let sock = dir.join("vfsd.sock");
        let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
        let child = Command::new(C_VIRTIOFSD)
            .arg(format!("--socket-path={}", sock.display()))
            .args(["-o", &format!("source={}", share.display())])
            .args(["-o", "cache=none", "-o", "sandbox=chroot", "-o", "xattr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn C virtiofsd");
        let d = CDaemon {
            child,
            dir,
            share,
            sock,
        };
        // The C daemon binds its socket before it listens: wait until the kernel lists it as
        // listening (a connect in between is refused; a probe connect would use up the one
        // connection it serves).
        let deadline = Instant::now() + Duration::from_secs(5);
        while !listening(&d.sock) {
            assert!(Instant::now() < deadline, "virtiofsd socket never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn session(&self) -> FuseSession {
        self.session_with(&ConnectOptions::default())
    }

    fn session_with(&self, opts: &ConnectOptions) -> FuseSession {
        let mut fs = FuseSession::connect_with(&self.sock, opts).expect("connect");
        let init = fs.init().expect("INIT");
        eprintln!(
            "INIT: {}.{} max_write={} max_pages={} flags={:#x}",
            init.major, init.minor, init.max_write, init.max_pages, init.flags
        );
        fs
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for CDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2654435761).rotate_left(seed as u32) as u8)
        .collect()
}

#[test]
fn connect_to_missing_socket_is_a_clear_error() {
    let e = FuseSession::connect("/nonexistent/vufs.sock").unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e}");
    assert!(e.to_string().contains("/nonexistent/vufs.sock"));
}

#[test]
fn c_daemon_basic_ops() {
    let d = CDaemon::start("basic");
    let mut fs = d.session();
    let fe_features = fs.frontend().features();
    eprintln!("acked features {fe_features:#x}");

    assert_eq!(
        fs.lookup(ROOT_ID, b"missing").unwrap_err().errno(),
        Some(libc::ENOENT)
    );
    let root = fs.getattr(ROOT_ID).unwrap();
    assert_eq!(root.attr.mode & libc::S_IFMT, libc::S_IFDIR);

    // CREATE + 1 MiB WRITE + READ back.
    let (e, o) = fs
        .create(ROOT_ID, b"file", 0o644, libc::O_RDWR as u32)
        .unwrap();
    assert_ne!(e.nodeid, 0);
    let data = pattern(1 << 20, 3);
    assert_eq!(fs.write(e.nodeid, o.fh, 0, &data).unwrap(), 1 << 20);
    fs.flush(e.nodeid, o.fh, 0).unwrap();
    fs.fsync(e.nodeid, o.fh, false).unwrap();
    let back = fs.read(e.nodeid, o.fh, 0, 1 << 20).unwrap();
    assert!(back == data, "read back differs");
    // Short read at EOF.
    let tail = fs.read(e.nodeid, o.fh, (1 << 20) - 10, 4096).unwrap();
    assert_eq!(tail, &data[(1 << 20) - 10..]);
    assert_eq!(
        std::fs::read(d.share.join("file")).unwrap(),
        data,
        "host file content"
    );
    let a = fs.getattr(e.nodeid).unwrap();
    assert_eq!(a.attr.size, 1 << 20);
    assert_eq!(
        a.attr.ino,
        std::fs::metadata(d.share.join("file")).unwrap().ino()
    );

    // SETATTR size + mode.
    assert_eq!(
        fs.truncate(e.nodeid, 4096, Some(o.fh)).unwrap().attr.size,
        4096
    );
    let m = fs.chmod(e.nodeid, 0o600).unwrap();
    assert_eq!(m.attr.mode & 0o777, 0o600);
    fs.release(e.nodeid, o.fh, libc::O_RDWR as u32).unwrap();

    // OPEN again read-only.
    let o2 = fs.open(e.nodeid, libc::O_RDONLY as u32).unwrap();
    assert_eq!(fs.read(e.nodeid, o2.fh, 0, 8).unwrap(), &data[..8]);
    fs.release(e.nodeid, o2.fh, libc::O_RDONLY as u32).unwrap();

    // MKDIR, LINK, SYMLINK, READLINK, RENAME.
    let dir = fs.mkdir(ROOT_ID, b"dir", 0o755).unwrap();
    let l = fs.link(e.nodeid, dir.nodeid, b"hardlink").unwrap();
    assert_eq!(l.nodeid, e.nodeid);
    assert_eq!(l.attr.nlink, 2);
    let s = fs.symlink(ROOT_ID, b"sym", b"dir/hardlink").unwrap();
    assert_eq!(fs.readlink(s.nodeid).unwrap(), b"dir/hardlink");
    fs.rename(dir.nodeid, b"hardlink", ROOT_ID, b"renamed")
        .unwrap();
    assert!(d.share.join("renamed").exists());
    // The C daemon answers EIO here (its internal lookup fails), others ENOENT.
    let err = fs
        .rename(ROOT_ID, b"nope", ROOT_ID, b"x")
        .unwrap_err()
        .errno();
    assert!(
        matches!(err, Some(libc::ENOENT) | Some(libc::EIO)),
        "{err:?}"
    );

    // READDIR / READDIRPLUS.
    let od = fs.opendir(ROOT_ID).unwrap();
    let ents = fs.readdir(ROOT_ID, od.fh, 0, 4096).unwrap();
    let mut names: Vec<_> = ents.iter().map(|e| e.name.clone()).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            b".".to_vec(),
            b"..".to_vec(),
            b"dir".to_vec(),
            b"file".to_vec(),
            b"renamed".to_vec(),
            b"sym".to_vec()
        ]
    );
    let plus = fs.readdirplus(ROOT_ID, od.fh, 0, 8192).unwrap();
    let f = plus
        .iter()
        .find(|p| p.dirent.name == b"file")
        .expect("file in readdirplus");
    assert_eq!(f.entry.nodeid, e.nodeid);
    assert_eq!(f.entry.attr.size, 4096);
    assert_eq!(f.dirent.type_, libc::DT_REG as u32);
    // Drop the lookup references READDIRPLUS took.
    let forgets: Vec<(u64, u64)> = plus
        .iter()
        .filter(|p| p.entry.nodeid != 0 && p.dirent.name != b"." && p.dirent.name != b"..")
        .map(|p| (p.entry.nodeid, 1))
        .collect();
    fs.batch_forget(&forgets).unwrap();
    fs.releasedir(ROOT_ID, od.fh).unwrap();

    // XATTR.
    fs.setxattr(e.nodeid, b"user.k", b"value", 0).unwrap();
    assert_eq!(
        fs.getxattr(e.nodeid, b"user.k", 0).unwrap(),
        XattrReply::Size(5)
    );
    assert_eq!(
        fs.getxattr(e.nodeid, b"user.k", 64).unwrap(),
        XattrReply::Data(b"value".to_vec())
    );
    match fs.listxattr(e.nodeid, 256).unwrap() {
        XattrReply::Data(d) => assert!(d.windows(7).any(|w| w == b"user.k\0"), "{d:?}"),
        other => panic!("{other:?}"),
    }
    fs.removexattr(e.nodeid, b"user.k").unwrap();
    assert_eq!(
        fs.getxattr(e.nodeid, b"user.k", 64).unwrap_err().errno(),
        Some(libc::ENODATA)
    );

    // STATFS, ACCESS.
    let st = fs.statfs(ROOT_ID).unwrap();
    assert!(st.bsize > 0 && st.namelen > 0);
    // The C daemon has no ACCESS handler (ENOSYS).
    match fs.access(ROOT_ID, libc::R_OK as u32) {
        Ok(()) => {}
        Err(e) => assert_eq!(e.errno(), Some(libc::ENOSYS), "{e}"),
    }

    // UNLINK, RMDIR, FORGET.
    fs.unlink(ROOT_ID, b"renamed").unwrap();
    fs.unlink(ROOT_ID, b"sym").unwrap();
    assert_eq!(
        fs.rmdir(ROOT_ID, b"file").unwrap_err().errno(),
        Some(libc::ENOTDIR)
    );
    fs.rmdir(ROOT_ID, b"dir").unwrap();
    fs.forget(s.nodeid, 1).unwrap();
    fs.forget(dir.nodeid, 1).unwrap();
    // create + link took two references on the file.
    fs.forget(e.nodeid, 2).unwrap();
    // The C daemon needs the name looked up (inode known) to unlink it: EIO otherwise.
    let again = fs.lookup(ROOT_ID, b"file").unwrap();
    fs.unlink(ROOT_ID, b"file").unwrap();
    fs.forget(again.nodeid, 1).unwrap();

    // Everything came back; no guest buffers leaked.
    assert_eq!(fs.frontend().pool_in_use(), 0);
}

#[test]
fn c_daemon_pipelined_io() {
    let d = CDaemon::start("pipe");
    let opts = ConnectOptions {
        queue_size: 1024,
        ..Default::default()
    };
    let mut fs = d.session_with(&opts);
    let (e, o) = fs
        .create(ROOT_ID, b"big", 0o644, libc::O_RDWR as u32)
        .unwrap();
    const BS: usize = 128 * 1024;
    const N: usize = 64;
    const QD: usize = 16;
    let data = pattern(BS * N, 9);
    let start = Instant::now();
    let mut next = 0;
    let mut done = 0;
    while done < N {
        while next < N && fs.pending_count() < QD {
            fs.submit_write(
                e.nodeid,
                o.fh,
                (next * BS) as u64,
                &data[next * BS..(next + 1) * BS],
            )
            .unwrap();
            next += 1;
        }
        let (_, r) = fs.wait_any_reply().unwrap();
        let body = r.unwrap().into_result().unwrap();
        let w: vufs_frontend::fuse::WriteOut = vufs_frontend::fuse::parse_obj(&body).unwrap();
        assert_eq!(w.size as usize, BS);
        done += 1;
    }
    let wt = start.elapsed();
    // Random-order reads at QD 16; check each by its offset.
    let start = Instant::now();
    let mut by_token = std::collections::HashMap::new();
    let order: Vec<usize> = (0..N).map(|i| (i * 37) % N).collect();
    let mut it = order.iter();
    let mut done = 0;
    loop {
        while fs.pending_count() < QD {
            let Some(&blk) = it.next() else { break };
            let p = fs
                .submit_read(e.nodeid, o.fh, (blk * BS) as u64, BS as u32)
                .unwrap();
            by_token.insert(p.token, blk);
        }
        if fs.pending_count() == 0 {
            break;
        }
        let (p, r) = fs.wait_any_reply().unwrap();
        let blk = by_token[&p.token];
        let body = r.unwrap().into_result().unwrap();
        assert!(body == data[blk * BS..(blk + 1) * BS], "block {blk}");
        done += 1;
    }
    assert_eq!(done, N);
    eprintln!(
        "C virtiofsd: wrote {} MiB in {:?}, read in {:?}",
        (BS * N) >> 20,
        wt,
        start.elapsed()
    );
    assert_eq!(fs.frontend().pool_in_use(), 0);
}

#[test]
fn c_daemon_without_event_idx() {
    let d = CDaemon::start("noevidx");
    let opts = ConnectOptions {
        event_idx: false,
        suppress_kicks: false,
        ..Default::default()
    };
    let mut fs = d.session_with(&opts);
    assert_eq!(
        fs.frontend().features() & vufs_frontend::vhost::VIRTIO_RING_F_EVENT_IDX,
        0
    );
    for _ in 0..600 {
        // More than the queue size, to wrap the rings.
        fs.getattr(ROOT_ID).unwrap();
    }
    fs.set_compact_chains(true);
    let (e, o) = fs
        .create(ROOT_ID, b"f", 0o644, libc::O_RDWR as u32)
        .unwrap();
    let data = pattern(300_000, 1);
    assert_eq!(fs.write(e.nodeid, o.fh, 0, &data).unwrap(), 300_000);
    assert!(fs.read(e.nodeid, o.fh, 0, 300_000).unwrap() == data);
}

/// Hostile chains: the frontend must never hang or panic. Prints what the C daemon
/// does with each (it is not the daemon under test; it aborts on several).
#[test]
fn c_daemon_hostile_chains() {
    let t = Duration::from_secs(2);
    let getattr = |unique| encode_request(unique, Opcode::Getattr as u32, ROOT_ID, &[&[0u8; 16]]);
    let mem_size = ConnectOptions::default().mem_size as u64;
    let big_len = {
        let mut v = getattr(100);
        v[0..4].copy_from_slice(&4096u32.to_le_bytes());
        v
    };
    let lookup_no_nul = encode_request(101, Opcode::Lookup as u32, ROOT_ID, &[b"abc"]);
    let g = getattr(102);
    let cases: Vec<(&str, Vec<Desc>)> = vec![
        (
            "well-formed",
            vec![Desc::readable(g.clone()), Desc::writable(120)],
        ),
        (
            "short header",
            vec![Desc::readable(vec![0u8; 10]), Desc::writable(256)],
        ),
        (
            "header len > chain",
            vec![Desc::readable(big_len), Desc::writable(256)],
        ),
        ("readable only", vec![Desc::readable(g.clone())]),
        ("writable only", vec![Desc::writable(256)]),
        (
            "readable flagged writable",
            vec![
                Desc::readable(g.clone()).flags(VIRTQ_DESC_F_WRITE),
                Desc::writable(256),
            ],
        ),
        (
            "addr outside memory",
            vec![Desc::raw(mem_size + 4096, 40, 0), Desc::writable(256)],
        ),
        (
            "addr wraps",
            vec![Desc::raw(u64::MAX - 8, 40, 0), Desc::writable(256)],
        ),
        (
            "writable outside memory",
            vec![
                Desc::readable(g.clone()),
                Desc::raw(mem_size - 8, 256, VIRTQ_DESC_F_WRITE),
            ],
        ),
        (
            "loop",
            vec![
                Desc::readable(g.clone()),
                Desc::writable(256).link(Link::To(0)),
            ],
        ),
        (
            "self loop",
            vec![Desc::readable(g.clone()).link(Link::To(0))],
        ),
        (
            "next >= queue size",
            vec![Desc::readable(g.clone()).link(Link::Raw(60000))],
        ),
        (
            "zero-length readable",
            vec![Desc::readable(Vec::new()), Desc::writable(256)],
        ),
        (
            "zero-length writable",
            vec![Desc::readable(g.clone()), Desc::writable(0)],
        ),
        (
            "indirect ok",
            vec![Desc::indirect(vec![
                Desc::readable(g.clone()),
                Desc::writable(256),
            ])],
        ),
        ("indirect empty", vec![Desc::indirect(vec![])]),
        (
            "indirect odd len",
            vec![Desc::indirect_with_len(
                vec![Desc::readable(g.clone()), Desc::writable(256)],
                17,
            )],
        ),
        (
            "indirect huge len",
            vec![Desc::indirect_with_len(
                vec![Desc::readable(g.clone())],
                u32::MAX - 15,
            )],
        ),
        (
            "nested indirect",
            vec![Desc::indirect(vec![Desc::indirect(vec![
                Desc::readable(g.clone()),
                Desc::writable(256),
            ])])],
        ),
        (
            "indirect + next",
            vec![
                Desc::indirect(vec![Desc::readable(g.clone())]),
                Desc::writable(256),
            ],
        ),
        (
            "indirect loop",
            vec![Desc::indirect(vec![
                Desc::readable(g.clone()),
                Desc::writable(256).link(Link::To(0)),
            ])],
        ),
        (
            "indirect outside memory",
            vec![Desc::raw(mem_size * 2, 32, VIRTQ_DESC_F_INDIRECT)],
        ),
        (
            "name without NUL",
            vec![Desc::readable(lookup_no_nul), Desc::writable(256)],
        ),
        (
            "header split byte-wise",
            g.iter()
                .map(|b| Desc::readable(vec![*b]))
                .chain([Desc::writable(256)])
                .collect(),
        ),
    ];
    let mut daemon: Option<(CDaemon, FuseSession)> = None;
    for (i, (name, chain)) in cases.into_iter().enumerate() {
        if !daemon.as_mut().is_some_and(|(d, _)| d.alive()) {
            let d = CDaemon::start(&format!("hostile{i}"));
            let fs = d.session();
            daemon = Some((d, fs));
        }
        let Some((d, fs)) = daemon.as_mut() else {
            unreachable!()
        };
        let start = Instant::now();
        let r = fs.frontend().send_chain(REQUEST_QUEUE, &chain, t);
        let what = match &r {
            Ok(c) if c.reply.len() >= 16 => format!(
                "used len {} out.error={}",
                c.used_len,
                i32::from_le_bytes([c.reply[4], c.reply[5], c.reply[6], c.reply[7]])
            ),
            Ok(c) => format!("used len {}", c.used_len),
            Err(e) => format!("ERR {e}"),
        };
        // Give an aborting daemon a moment to be reaped.
        std::thread::sleep(Duration::from_millis(50));
        let alive = d.alive();
        let last = d.log().lines().last().unwrap_or("").to_string();
        eprintln!(
            "{name:26} -> {what} ({:?}) alive={alive}{}",
            start.elapsed(),
            if alive {
                String::new()
            } else {
                format!(" [{last}]")
            }
        );
        if name == "well-formed" {
            assert!(r.is_ok(), "well-formed chain failed");
        }
        // A timeout must be a timeout, not a hang.
        assert!(start.elapsed() < t + Duration::from_secs(1));
    }
    // Hiprio: a FORGET shorter than its header.
    let d = CDaemon::start("hostile-hiprio");
    let mut fs = d.session();
    let h = fs
        .frontend()
        .send_raw(HIPRIO_QUEUE, &g[..IN_HEADER_LEN - 1], 0, t);
    eprintln!("short hiprio -> {:?}", h.map(|c| c.used_len));
}

/// Ring-level corruption: head index ≥ queue size, avail idx jumping too far.
#[test]
fn c_daemon_ring_corruption() {
    for case in ["head", "idx"] {
        let mut d = CDaemon::start(&format!("ring-{case}"));
        let mut fs = d.session();
        {
            let fe = fs.frontend();
            let (q, mem) = fe.queue_mut(REQUEST_QUEUE).unwrap();
            if case == "head" {
                q.poke_avail_head(mem, 1000).unwrap();
            } else {
                let i = q.avail_idx();
                q.poke_avail_idx(mem, i.wrapping_add(q.size() + 5)).unwrap();
            }
            q.kick_now().unwrap();
        }
        std::thread::sleep(Duration::from_millis(300));
        let alive = d.alive();
        let mut fs2_ok = None;
        if alive {
            fs.frontend().set_timeout(Duration::from_secs(2));
            fs2_ok = Some(fs.getattr(ROOT_ID).map(|_| ()).map_err(|e| e.to_string()));
        }
        eprintln!("ring {case}: daemon alive {alive}, getattr after: {fs2_ok:?}");
        eprintln!("log tail: {}", d.log().lines().last().unwrap_or(""));
    }
}

/// Whether a Unix socket bound at `path` is listening (`/proc/net/unix`: flag
/// `__SO_ACCEPTCON`, 0x10000).
fn listening(path: &std::path::Path) -> bool {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let want = path.to_string_lossy();
    table.lines().skip(1).any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 8
            && f[7] == want
            && u32::from_str_radix(f[3], 16).is_ok_and(|flags| flags & 0x10000 != 0)
    })
}
