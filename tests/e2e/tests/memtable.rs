//! Hostile memory tables against the real daemon binary: a region that reaches past the end of
//! its file (mapping it would succeed, and the first access past the end would kill the daemon
//! with SIGBUS), sent with SET_MEM_TABLE and with ADD_MEM_REG, and an `mmap_offset +
//! memory_size` that overflows.
//!
//! A refused region must get an error reply (REPLY_ACK), leave the old table in use (a reply
//! aimed into the refused region comes back unwritten), and the daemon must go on serving; a
//! good table sent afterwards must serve a FUSE request into its new region.

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::time::Duration;

use common::{bytes, Build, Env, T};
use vufs_frontend::fuse::{GetattrIn, Opcode};
use vufs_frontend::memory::memfd;
use vufs_frontend::{
    encode_request, Completion, ConnectOptions, Desc, FuseSession, VhostUserMemoryRegionInfo,
    REQUEST_QUEUE, ROOT_ID, VIRTQ_DESC_F_WRITE,
};

/// Guest address of the extra region (far above the frontend's own guest memory).
const EXTRA_GPA: u64 = 1 << 30;
/// Size of the extra region.
const EXTRA_SIZE: u64 = 1 << 20;
/// Offset inside the extra region where the daemon is asked to write a reply.
const REPLY_OFF: u64 = 64 << 10;
/// fuse_out_header + fuse_attr_out.
const GETATTR_REPLY: u32 = 16 + 104;

/// A region of `size` bytes at `gpa`, backed by `file` from `mmap_offset`.
fn region(file: &File, gpa: u64, size: u64, mmap_offset: u64) -> VhostUserMemoryRegionInfo {
    VhostUserMemoryRegionInfo {
        guest_phys_addr: gpa,
        memory_size: size,
        // A frontend address range of its own (only vring addresses are translated with it).
        userspace_addr: 0x4000_0000_0000 + gpa,
        mmap_offset,
        mmap_handle: file.as_raw_fd(),
    }
}

/// A hostile region: its file's size and the mapping offset (the region is `EXTRA_SIZE` long).
struct Bad {
    what: &'static str,
    file_len: u64,
    mmap_offset: u64,
}

/// Regions reaching past the end of their file.
const PAST_THE_END: [Bad; 2] = [
    Bad {
        what: "1 MiB region on a 4 KiB file",
        file_len: 4096,
        mmap_offset: 0,
    },
    Bad {
        what: "1 MiB region at offset 4 KiB of a 1 MiB file",
        file_len: EXTRA_SIZE,
        mmap_offset: 4096,
    },
];

/// `mmap_offset + memory_size` wraps past 2^64.
const OVERFLOW: Bad = Bad {
    what: "mmap_offset + memory_size overflows",
    file_len: EXTRA_SIZE,
    mmap_offset: u64::MAX - 4095,
};

impl Bad {
    /// The daemon's log line for its refusal.
    fn log_line(&self) -> String {
        let head = format!(
            "memory region refused: mmap_offset {:#x} + memory_size {EXTRA_SIZE:#x} ",
            self.mmap_offset
        );
        match self.mmap_offset.checked_add(EXTRA_SIZE) {
            Some(_) => format!(
                "{head}is past the end of its file ({:#x} bytes)",
                self.file_len
            ),
            None => format!("{head}overflows"),
        }
    }
}

/// GETATTR(ROOT) whose reply buffer is at guest address `reply_gpa`.
fn getattr_into(fs: &mut FuseSession, reply_gpa: u64) -> vufs_frontend::Result<Completion> {
    let unique = fs.next_unique();
    let req = encode_request(
        unique,
        Opcode::Getattr as u32,
        ROOT_ID,
        &[&bytes(&GetattrIn::default())],
    );
    let chain = [
        Desc::readable(req),
        Desc::raw(reply_gpa, 4096, VIRTQ_DESC_F_WRITE),
    ];
    fs.frontend().send_chain(REQUEST_QUEUE, &chain, T)
}

/// `r` is an error reply; the table in use is still the old one (a reply aimed into the
/// refused region comes back with nothing written: no SIGBUS); the daemon serves on and logs
/// why it refused.
fn assert_refused(e: &mut Env, fs: &mut FuseSession, bad: &Bad, r: vufs_frontend::Result<()>) {
    let what = bad.what;
    let into_refused = getattr_into(fs, EXTRA_GPA + REPLY_OFF);
    let refused = matches!(&r, Err(err) if err.is_refusal());
    if !refused || !matches!(into_refused, Ok(Completion { used_len: 0, .. })) {
        let status = e.d.wait_exit(Duration::from_millis(500));
        panic!(
            "{what}: reply {r:?} (want an error reply, and the old table serving on); then a GETATTR \
             replying into the region: {:?}; daemon exit status {status:?}\n{}",
            into_refused.map(|c| c.used_len),
            e.d.stderr()
        );
    }
    e.still_serving(fs)
        .unwrap_or_else(|m| panic!("{what}: {m}"));
    // The loop logs after the error reply is sent: wait for the line.
    e.d.wait_for_stderr(&bad.log_line(), T)
        .unwrap_or_else(|m| panic!("{what}: {m}"));
}

/// A GETATTR into the (now good) extra region is served, and its reply is in the file.
fn assert_served_into(e: &mut Env, fs: &mut FuseSession, file: &File) {
    let c = getattr_into(fs, EXTRA_GPA + REPLY_OFF)
        .unwrap_or_else(|err| panic!("GETATTR into the good region: {err}\n{}", e.d.stderr()));
    assert_eq!(c.used_len, GETATTR_REPLY, "{}", e.d.stderr());
    let mut hdr = [0u8; 16];
    file.read_exact_at(&mut hdr, REPLY_OFF).unwrap();
    let len = u32::from_le_bytes(hdr[0..4].try_into().unwrap());
    let error = i32::from_le_bytes(hdr[4..8].try_into().unwrap());
    assert_eq!(
        (len, error),
        (GETATTR_REPLY, 0),
        "reply header in the region"
    );
}

#[test]
fn set_mem_table_with_a_region_past_the_end_of_its_file_is_refused() {
    let mut e = Env::start(Build::Normal, &[], &[]);
    let mut fs = e.session();
    let own = fs.frontend().mem().region_info();
    for bad in &PAST_THE_END {
        let file = memfd(bad.file_len).unwrap();
        let table = [own, region(&file, EXTRA_GPA, EXTRA_SIZE, bad.mmap_offset)];
        let r = fs.frontend().set_mem_table(&table);
        assert_refused(&mut e, &mut fs, bad, r);
    }
    let good = memfd(EXTRA_SIZE).unwrap();
    let table = [own, region(&good, EXTRA_GPA, EXTRA_SIZE, 0)];
    fs.frontend()
        .set_mem_table(&table)
        .unwrap_or_else(|err| panic!("good table refused: {err}\n{}", e.d.stderr()));
    assert_served_into(&mut e, &mut fs, &good);
}

#[test]
fn add_mem_region_past_the_end_of_its_file_is_refused() {
    let mut e = Env::start(Build::Normal, &[], &[]);
    let mut fs = e.connect_with(ConnectOptions {
        mem_slots: true,
        ..Default::default()
    });
    fs.init().unwrap();
    // vhost 0.15 does not check a single region's offset + size: the overflow reaches the
    // backend's check too.
    for bad in PAST_THE_END.iter().chain([&OVERFLOW]) {
        let file = memfd(bad.file_len).unwrap();
        let r =
            fs.frontend()
                .add_mem_region(&region(&file, EXTRA_GPA, EXTRA_SIZE, bad.mmap_offset));
        assert_refused(&mut e, &mut fs, bad, r);
    }
    let good = memfd(EXTRA_SIZE).unwrap();
    fs.frontend()
        .add_mem_region(&region(&good, EXTRA_GPA, EXTRA_SIZE, 0))
        .unwrap_or_else(|err| panic!("good region refused: {err}\n{}", e.d.stderr()));
    assert_served_into(&mut e, &mut fs, &good);
}

/// In SET_MEM_TABLE an overflowing `mmap_offset + memory_size` is caught by vhost's own
/// message check, before the backend sees it: vhost sends the error reply and then ends the
/// connection, so the daemon maps nothing and exits 1 naming the invalid message (never by a
/// signal). (ADD_MEM_REG's overflow is refused and served on: the test above.)
#[test]
fn set_mem_table_overflowing_offset_plus_size_ends_the_connection_cleanly() {
    let mut e = Env::start(Build::Normal, &[], &[]);
    let mut fs = e.session();
    let file = memfd(OVERFLOW.file_len).unwrap();
    let own = fs.frontend().mem().region_info();
    let bad = region(&file, EXTRA_GPA, EXTRA_SIZE, OVERFLOW.mmap_offset);
    match fs.frontend().set_mem_table(&[own, bad]) {
        Err(err) => assert!(err.is_refusal(), "not an error reply: {err}"),
        Ok(()) => panic!("an overflowing region was accepted"),
    }
    let status = e.d.wait_exit(T);
    let log = e.d.stderr();
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{status:?}\n{log}");
    assert!(
        log.contains("vhost-user connection failed: failed to handle request: invalid message"),
        "{log}"
    );
}
