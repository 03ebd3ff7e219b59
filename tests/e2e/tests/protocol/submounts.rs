//! A share with a tmpfs mounted inside it, and what INIT, LOOKUP and READDIRPLUS say about it.

use super::*;

/// A share with a tmpfs mounted at `mnt` (holding `inner`), and a plain directory `plain`.
pub(super) fn submount_env(args: &[&str]) -> Env {
    let s = Scratch::new();
    let m = MountGuard::tmpfs(&s.share.join("mnt"));
    std::fs::write(s.share.join("mnt/inner"), b"on tmpfs").unwrap();
    std::fs::create_dir(s.share.join("plain")).unwrap();
    Env::launch(s, Some(m), Build::Normal, args, &[])
}

pub(super) fn submount_flags(
    args: &[&str],
    offer: bool,
) -> (FsOptions, u32, u32, Vec<(Vec<u8>, u32)>) {
    let env = submount_env(args);
    let mut fs = env.connect_with(ConnectOptions::default());
    let mut flags = FsOptions::ASYNC_READ
        | FsOptions::BIG_WRITES
        | FsOptions::DO_READDIRPLUS
        | FsOptions::MAX_PAGES;
    if offer {
        flags |= FsOptions::SUBMOUNTS;
    }
    let o = fs
        .init_with(InitIn {
            major: 7,
            minor: INIT_MINOR,
            max_readahead: 128 * 1024,
            flags: flags.bits() as u32,
        })
        .unwrap();
    let mnt = fs.lookup(ROOT_ID, b"mnt").unwrap();
    let plain = fs.lookup(ROOT_ID, b"plain").unwrap();
    // Inside the submount, entries are not submounts themselves.
    let inner = fs.lookup(mnt.nodeid, b"inner").unwrap();
    assert_eq!(inner.attr.flags & FUSE_ATTR_SUBMOUNT, 0);
    let od = fs.opendir(ROOT_ID).unwrap();
    let plus = fs.readdirplus(ROOT_ID, od.fh, 0, 16384).unwrap();
    let ents = plus
        .iter()
        .map(|p| (p.dirent.name.clone(), p.entry.attr.flags))
        .collect();
    assert_eq!(
        mnt.attr.ino,
        std::fs::metadata(env.host("mnt")).unwrap().ino()
    );
    (init_flags(&o), mnt.attr.flags, plain.attr.flags, ents)
}

pub(super) fn flags_of(ents: &[(Vec<u8>, u32)], name: &[u8]) -> u32 {
    ents.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{} not in READDIRPLUS", String::from_utf8_lossy(name)))
        .1
}
