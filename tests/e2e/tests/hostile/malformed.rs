//! The malformed cases: descriptor chains and FUSE bodies no kernel sends, each with the reply
//! it must get.

use super::*;

/// What a malformed request must come back as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Expect {
    /// An error reply with this errno.
    Errno(i32),
    /// The chain comes back used, with nothing written.
    UsedZero,
    /// Odd but harmless: served like the GETATTR(ROOT) it carries (a 120-byte reply).
    Served,
}

/// How one chain came back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Seen {
    Errno(i32),
    Ok(u32),
    Used(u32),
    BadReply(String),
    NoCompletion(String),
}

pub(super) struct Mal {
    pub(super) what: &'static str,
    pub(super) queue: usize,
    pub(super) expect: Expect,
    pub(super) chain: fn(&Fx, u64, u64) -> Vec<Desc>,
}

pub(super) fn header(unique: u64, opcode: u32, nodeid: u64, len: u32) -> Vec<u8> {
    bytes(&InHeader {
        len,
        opcode,
        unique,
        nodeid,
        ..Default::default()
    })
}

pub(super) fn getattr(unique: u64) -> Vec<u8> {
    encode_request(
        unique,
        Opcode::Getattr as u32,
        ROOT_ID,
        &[&bytes(&GetattrIn::default())],
    )
}

pub(super) fn read_req(unique: u64, fx: &Fx, offset: u64) -> Vec<u8> {
    let r = ReadIn {
        fh: fx.f_fh,
        offset,
        size: 4096,
        ..Default::default()
    };
    encode_request(unique, Opcode::Read as u32, fx.f, &[&bytes(&r)])
}

pub(super) fn write_req(unique: u64, fx: &Fx, offset: u64, size: u32, data: &[u8]) -> Vec<u8> {
    let w = WriteIn {
        fh: fx.f_fh,
        offset,
        size,
        ..Default::default()
    };
    encode_request(unique, Opcode::Write as u32, fx.f, &[&bytes(&w), data])
}

pub(super) fn reply_room() -> Desc {
    Desc::writable(4096 + 16)
}

macro_rules! mal {
    ($what:expr, $q:expr, $expect:expr, |$fx:ident, $u:ident, $mem:ident| $body:expr) => {
        Mal {
            what: $what,
            queue: $q,
            expect: $expect,
            chain: |$fx: &Fx, $u: u64, $mem: u64| {
                let _ = (&$fx, $u, $mem);
                $body
            },
        }
    };
}

pub(super) fn malformed_cases() -> Vec<Mal> {
    use libc::{EINVAL, ENOSYS};
    use Expect::*;
    const Q: usize = REQUEST_QUEUE;
    vec![
        mal!(
            "in-header cut short (10 bytes)",
            Q,
            UsedZero,
            |fx, u, mem| vec![Desc::readable(getattr(u)[..10].to_vec()), reply_room()]
        ),
        mal!(
            "header len beyond the chain",
            Q,
            Errno(EINVAL),
            |fx, u, mem| {
                let mut g = getattr(u);
                g[..4].copy_from_slice(&4096u32.to_le_bytes());
                vec![Desc::readable(g), reply_room()]
            }
        ),
        mal!(
            "header len 8 (< header size)",
            Q,
            Errno(EINVAL),
            |fx, u, mem| {
                let mut g = getattr(u);
                g[..4].copy_from_slice(&8u32.to_le_bytes());
                vec![Desc::readable(g), reply_room()]
            }
        ),
        mal!("header len 0", Q, Errno(EINVAL), |fx, u, mem| vec![
            Desc::readable(header(u, Opcode::Getattr as u32, ROOT_ID, 0)),
            reply_room()
        ]),
        mal!("write-only chain", Q, UsedZero, |fx, u, mem| vec![
            reply_room()
        ]),
        mal!(
            "readable-only chain (no room for a reply)",
            Q,
            UsedZero,
            |fx, u, mem| vec![Desc::readable(getattr(u))]
        ),
        mal!(
            "request in a writable buffer",
            Q,
            UsedZero,
            |fx, u, mem| vec![
                Desc::readable(getattr(u)).flags(VIRTQ_DESC_F_WRITE),
                reply_room()
            ]
        ),
        mal!(
            "reply buffer before the request",
            Q,
            Served,
            |fx, u, mem| vec![reply_room(), Desc::readable(getattr(u))]
        ),
        mal!(
            "readable outside guest memory",
            Q,
            UsedZero,
            |fx, u, mem| vec![Desc::raw(mem + 4096, 56, 0), reply_room()]
        ),
        mal!("readable address wraps", Q, UsedZero, |fx, u, mem| vec![
            Desc::raw(u64::MAX - 8, 56, 0),
            reply_room()
        ]),
        mal!(
            "writable outside guest memory",
            Q,
            UsedZero,
            |fx, u, mem| vec![
                Desc::readable(getattr(u)),
                Desc::raw(mem + 4096, 256, VIRTQ_DESC_F_WRITE)
            ]
        ),
        mal!(
            "writable straddles the end of memory",
            Q,
            UsedZero,
            |fx, u, mem| vec![
                Desc::readable(getattr(u)),
                Desc::raw(mem - 8, 256, VIRTQ_DESC_F_WRITE)
            ]
        ),
        mal!("descriptor loop", Q, Served, |fx, u, mem| vec![
            Desc::readable(getattr(u)),
            reply_room().link(Link::To(0))
        ]),
        mal!("self loop", Q, UsedZero, |fx, u, mem| vec![Desc::readable(
            getattr(u)
        )
        .link(Link::To(0))]),
        mal!("next index >= queue size", Q, UsedZero, |fx, u, mem| vec![
            Desc::readable(getattr(u)).link(Link::Raw(60000))
        ]),
        mal!("nested indirect table", Q, UsedZero, |fx, u, mem| vec![
            Desc::indirect(vec![Desc::indirect(vec![
                Desc::readable(getattr(u)),
                reply_room()
            ])])
        ]),
        mal!(
            "indirect table of 17 bytes",
            Q,
            UsedZero,
            |fx, u, mem| vec![Desc::indirect_with_len(
                vec![Desc::readable(getattr(u)), reply_room()],
                17
            )]
        ),
        mal!("empty indirect table", Q, UsedZero, |fx, u, mem| vec![
            Desc::indirect(vec![])
        ]),
        mal!("huge indirect table", Q, UsedZero, |fx, u, mem| vec![
            Desc::indirect_with_len(
                vec![Desc::readable(getattr(u)), reply_room()],
                u32::MAX - 15
            )
        ]),
        mal!(
            "indirect table outside memory",
            Q,
            UsedZero,
            |fx, u, mem| vec![Desc::raw(mem * 2, 32, VIRTQ_DESC_F_INDIRECT)]
        ),
        mal!("indirect loop", Q, Served, |fx, u, mem| vec![
            Desc::indirect(vec![
                Desc::readable(getattr(u)),
                reply_room().link(Link::To(0))
            ])
        ]),
        mal!(
            "indirect descriptor with NEXT",
            Q,
            UsedZero,
            |fx, u, mem| vec![
                Desc::indirect(vec![Desc::readable(getattr(u))]),
                reply_room()
            ]
        ),
        mal!("zero-length readable", Q, UsedZero, |fx, u, mem| vec![
            Desc::readable(Vec::new()),
            reply_room()
        ]),
        mal!("zero-length writable", Q, UsedZero, |fx, u, mem| vec![
            Desc::readable(getattr(u)),
            Desc::writable(0)
        ]),
        mal!(
            "reply room smaller than the out header",
            Q,
            UsedZero,
            |fx, u, mem| vec![Desc::readable(getattr(u)), Desc::writable(8)]
        ),
        mal!(
            "WRITE size 4096 with 10 bytes",
            Q,
            Errno(EINVAL),
            |fx, u, mem| vec![
                Desc::readable(write_req(u, fx, 0, 4096, &[b'W'; 10])),
                reply_room()
            ]
        ),
        mal!(
            "WRITE with a truncated WriteIn",
            Q,
            Errno(EINVAL),
            |fx, u, mem| {
                let mut w = write_req(u, fx, 0, 0, &[]);
                w.truncate(40 + 20);
                w[..4].copy_from_slice(&60u32.to_le_bytes());
                vec![Desc::readable(w), reply_room()]
            }
        ),
        mal!(
            "READ with a truncated ReadIn",
            Q,
            Errno(EINVAL),
            |fx, u, mem| {
                let mut r = read_req(u, fx, 0);
                r.truncate(40 + 20);
                r[..4].copy_from_slice(&60u32.to_le_bytes());
                vec![Desc::readable(r), reply_room()]
            }
        ),
        mal!(
            "SETATTR with 3 bytes of body",
            Q,
            Errno(EINVAL),
            |fx, u, mem| {
                let s = bytes(&SetattrIn::default());
                vec![
                    Desc::readable(encode_request(u, Opcode::Setattr as u32, fx.f, &[&s[..3]])),
                    reply_room(),
                ]
            }
        ),
        mal!(
            "INIT-less body: OPEN with no OpenIn",
            Q,
            Errno(EINVAL),
            |fx, u, mem| vec![
                Desc::readable(encode_request(u, Opcode::Open as u32, fx.f, &[])),
                reply_room()
            ]
        ),
        mal!(
            "RENAME with a truncated RenameIn",
            Q,
            Errno(EINVAL),
            |fx, u, mem| vec![
                Desc::readable(encode_request(
                    u,
                    Opcode::Rename as u32,
                    ROOT_ID,
                    &[&[1, 0, 0]]
                )),
                reply_room()
            ]
        ),
        mal!(
            "RENAME2 with flags and no names",
            Q,
            Errno(EINVAL),
            |fx, u, mem| {
                let r = Rename2In {
                    newdir: ROOT_ID,
                    flags: 0,
                    padding: 0,
                };
                vec![
                    Desc::readable(encode_request(
                        u,
                        Opcode::Rename2 as u32,
                        ROOT_ID,
                        &[&bytes(&r)],
                    )),
                    reply_room(),
                ]
            }
        ),
        mal!("unknown opcode 9999", Q, Errno(ENOSYS), |fx, u, mem| vec![
            Desc::readable(encode_request(u, 9999, ROOT_ID, &[])),
            reply_room()
        ]),
        mal!("opcode 0", Q, Errno(ENOSYS), |fx, u, mem| vec![
            Desc::readable(encode_request(u, 0, ROOT_ID, &[])),
            reply_room()
        ]),
        mal!(
            "opcode 7 (unassigned)",
            Q,
            Errno(ENOSYS),
            |fx, u, mem| vec![
                Desc::readable(encode_request(u, 7, ROOT_ID, &[])),
                reply_room()
            ]
        ),
        mal!(
            "opcode 19 (unassigned)",
            Q,
            Errno(ENOSYS),
            |fx, u, mem| vec![
                Desc::readable(encode_request(u, 19, ROOT_ID, &[])),
                reply_room()
            ]
        ),
        mal!("opcode u32::MAX", Q, Errno(ENOSYS), |fx, u, mem| vec![
            Desc::readable(encode_request(u, u32::MAX, ROOT_ID, &[])),
            reply_room()
        ]),
        mal!("READ at offset 2^63", Q, Errno(EINVAL), |fx, u, mem| vec![
            Desc::readable(read_req(u, fx, 1 << 63)),
            reply_room()
        ]),
        mal!(
            "READ at offset 2^64-1",
            Q,
            Errno(EINVAL),
            |fx, u, mem| vec![Desc::readable(read_req(u, fx, u64::MAX)), reply_room()]
        ),
        mal!(
            "READ ending past 2^63-1",
            Q,
            Errno(EINVAL),
            |fx, u, mem| vec![
                Desc::readable(read_req(u, fx, i64::MAX as u64 - 100)),
                reply_room()
            ]
        ),
        mal!("WRITE at offset 2^63", Q, Errno(EINVAL), |fx, u, mem| vec![
            Desc::readable(write_req(u, fx, 1 << 63, 4, b"WWWW")),
            reply_room()
        ]),
        mal!(
            "WRITE at offset 2^64-1",
            Q,
            Errno(EINVAL),
            |fx, u, mem| vec![
                Desc::readable(write_req(u, fx, u64::MAX, 4, b"WWWW")),
                reply_room()
            ]
        ),
        mal!("INIT again", Q, Errno(libc::EIO), |fx, u, mem| vec![
            Desc::readable(encode_request(
                u,
                Opcode::Init as u32,
                0,
                &[&[7, 0, 0, 0, 31, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]]
            )),
            reply_room()
        ]),
        // Hiprio carries FORGET, BATCH_FORGET and INTERRUPT only.
        mal!(
            "GETATTR on the hiprio queue",
            HIPRIO_QUEUE,
            Errno(EINVAL),
            |fx, u, mem| vec![Desc::readable(getattr(u)), reply_room()]
        ),
        mal!(
            "hiprio FORGET cut short",
            HIPRIO_QUEUE,
            UsedZero,
            |fx, u, mem| {
                let f = encode_request(u, Opcode::Forget as u32, fx.g, &[&1u64.to_le_bytes()]);
                vec![Desc::readable(f[..30].to_vec())]
            }
        ),
        mal!(
            "hiprio BATCH_FORGET count beyond its body",
            HIPRIO_QUEUE,
            UsedZero,
            |fx, u, mem| {
                let mut body = 1000u32.to_le_bytes().to_vec();
                body.extend_from_slice(&[0; 4]);
                body.extend_from_slice(&fx.g.to_le_bytes());
                body.extend_from_slice(&1u64.to_le_bytes());
                vec![Desc::readable(encode_request(
                    u,
                    Opcode::BatchForget as u32,
                    0,
                    &[&body],
                ))]
            }
        ),
    ]
}

/// Sends one malformed chain and reports how it came back.
pub(super) fn send_mal(fs: &mut FuseSession, fx: &Fx, m: &Mal) -> Seen {
    let unique = fs.next_unique();
    let mem = ConnectOptions::default().mem_size as u64;
    let chain = (m.chain)(fx, unique, mem);
    match fs.frontend().send_chain(m.queue, &chain, T) {
        Err(e) => Seen::NoCompletion(e.to_string()),
        Ok(c) if c.used_len == 0 => Seen::Used(0),
        Ok(c) => match parse_reply(&c, unique) {
            Ok(r) if r.header.error != 0 => Seen::Errno(-r.header.error),
            Ok(r) => Seen::Ok(r.header.len),
            Err(e) => Seen::BadReply(format!("used len {}: {e}", c.used_len)),
        },
    }
}

pub(super) fn seen_matches(seen: &Seen, want: Expect) -> bool {
    match (seen, want) {
        (Seen::Errno(e), Expect::Errno(w)) => *e == w,
        (Seen::Used(0), Expect::UsedZero) => true,
        (Seen::Ok(120), Expect::Served) => true,
        _ => false,
    }
}
