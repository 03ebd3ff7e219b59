//! Fuzzes the request path: arbitrary descriptor chains (flags, lengths, addresses inside and
//! outside guest memory, `next` links that loop, indirect tables) with arbitrary bytes, popped
//! from a real split queue and given to the daemon's own `Handler::inspect` / `Handler::serve`
//! over a passthrough filesystem on a temporary directory. It must never panic, hang or touch
//! anything outside the shared directory (a canary beside it is checked after every input).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueOwnedT};
use virtiofsd::fuse::handler::Handler;
use virtiofsd::fuse::request::{Policy, QueueKind};
use vm_memory::{Bytes, GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};

const MEM: usize = 1 << 20;
const DATA: u64 = 0x8000;
const QUEUE_LEN: u16 = 16;

struct World {
    _dir: tempfile::TempDir,
    canary: PathBuf,
    handler: Handler,
    mem: GuestMemoryAtomic<GuestMemoryMmap<()>>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("share");
        std::fs::create_dir_all(share.join("sub")).unwrap();
        std::fs::write(share.join("f"), b"data").unwrap();
        let canary = dir.path().join("canary");
        std::fs::write(&canary, b"canary").unwrap();
        let cli = virtiofsd::cli::Cli::try_parse_from([
            "virtiofsd".to_string(),
            format!("--shared-dir={}", share.display()),
            "--socket-path=/nonexistent/fuzz.sock".into(),
            "--sandbox=none".into(),
            "--seccomp=none".into(),
            "--xattr".into(),
        ])
        .unwrap();
        let cfg = cli.into_config().unwrap();
        let mut fs = virtiofsd::fuse::fs::open(&cfg.share, false, true, &cfg.shared_dir).unwrap();
        fs.import().unwrap();
        let mem = GuestMemoryAtomic::new(
            GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]).unwrap(),
        );
        let w = World {
            _dir: dir,
            canary,
            handler: Handler::new(fs, Policy::default(), Default::default()),
            mem,
        };
        // INIT first, so the fuzzer reaches the filesystem.
        run(&w, &init_input());
        w
    })
}

/// A well-formed INIT: one readable and one writable descriptor.
fn init_input() -> Vec<u8> {
    let mut req = Vec::new();
    req.extend_from_slice(&(40u32 + 64).to_le_bytes()); // len
    req.extend_from_slice(&26u32.to_le_bytes()); // INIT
    req.extend_from_slice(&1u64.to_le_bytes()); // unique
    req.extend_from_slice(&[0u8; 24]); // nodeid, uid, gid, pid, padding
    req.extend_from_slice(&7u32.to_le_bytes());
    req.extend_from_slice(&38u32.to_le_bytes());
    req.extend_from_slice(&[0u8; 56]);
    let mut input = vec![2u8];
    input.extend_from_slice(&[0, 104, 0, 0, 1]); // readable, len 104, at data+0, next 1
    input.extend_from_slice(&[1, 0, 1, 1, 0]); // writable, len 256, at data+256
    input.extend_from_slice(&req);
    input
}

/// Input: count, then per descriptor (flags, len lo, len hi, address slot, next), then payload.
fn run(w: &World, data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = (n as usize % 8) + 1;
    if rest.len() < n * 5 {
        return;
    }
    let (descs, payload) = rest.split_at(n * 5);
    let mem = w.mem.memory();
    let payload = &payload[..payload.len().min(MEM - DATA as usize)];
    if mem.write_slice(payload, GuestAddress(DATA)).is_err() {
        return;
    }
    let raw: Vec<RawDescriptor> = descs
        .chunks(5)
        .map(|d| {
            let flags = u16::from(d[0] & 0x7); // NEXT, WRITE, INDIRECT
            let len = u32::from(u16::from_le_bytes([d[1], d[2]]));
            let addr = match d[3] {
                0xff => u64::MAX - 8,      // wraps
                0xfe => MEM as u64 - 4,    // straddles the end
                0xfd => MEM as u64 + 4096, // outside
                slot => DATA + u64::from(slot) * 256,
            };
            RawDescriptor::from(SplitDescriptor::new(addr, len, flags, u16::from(d[4])))
        })
        .collect();
    let mq = MockSplitQueue::new(&*mem, QUEUE_LEN);
    if mq.add_desc_chains(&raw, 0).is_err() {
        return;
    }
    let mut q: Queue = mq.create_queue().unwrap();
    let kind = if descs[0] & 0x80 != 0 {
        QueueKind::Hiprio
    } else {
        QueueKind::Request
    };
    let chains: Vec<_> = match q.iter(w.mem.memory()) {
        Ok(it) => it.collect(),
        Err(_) => return,
    };
    for chain in chains {
        if chain.head_index() >= QUEUE_LEN {
            continue; // the daemon stops the device here (tested elsewhere)
        }
        let verdict = w.handler.inspect(&chain, kind);
        let _ = w.handler.serve(&chain, verdict, u16::from(kind == QueueKind::Request));
    }
    assert_eq!(
        std::fs::read(&w.canary).unwrap(),
        b"canary",
        "canary outside the share changed"
    );
}

fuzz_target!(|data: &[u8]| {
    run(world(), data);
});
