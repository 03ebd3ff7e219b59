//! A bind mount made on the host after the guest mounted the share, and what the guest sees of it.

use super::*;

/// Mounts made by a test, lazily unmounted (in reverse) when dropped.
pub(super) struct Mounts(pub(super) Vec<PathBuf>);

impl Mounts {
    pub(super) fn run(&mut self, args: &[&str], target: &Path) {
        let out = Command::new("mount")
            .args(args)
            .arg(target)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount {args:?} {}: {}",
            target.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        self.0.push(target.to_path_buf());
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for t in self.0.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(t).status();
        }
    }
}

/// Where the bind mount's source lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Source {
    /// A directory on the same filesystem as the share (same st_dev, another mount id).
    SameFs,
    /// A tmpfs (another st_dev).
    Tmpfs,
}

pub(super) struct LateBind {
    pub(super) out: GuestOutput,
    pub(super) dev_mnt: String,
    pub(super) dev_late: String,
    pub(super) mounts: String,
}

pub(super) const LATE_SCRIPT: &str = r#"
# The guest already knows share/late as a plain (empty) directory.
echo "before=$(ls -A /mnt/late | wc -l) before_dev_mnt=$(stat -c %d /mnt) before_dev_late=$(stat -c %d /mnt/late)"
guest-signal ready
waitfor /mnt/go
# Let the cached entry of `late` expire (entry timeout is 1 s with cache=auto).
sleep 2
echo "marker=$(cat /mnt/late/marker)"
ls -la /mnt/late
echo "dev_mnt=$(stat -c %d /mnt) dev_late=$(stat -c %d /mnt/late)"
echo "dev_late_marker=$(stat -c %d /mnt/late/marker)"
echo @@@MOUNTS
cat /proc/mounts
"#;

pub(super) fn late_bind_mount(launch: Launch, source: Source, extra: &[&str]) -> LateBind {
    let s = Scratch::new();
    let late = s.share.join("late");
    std::fs::create_dir(&late).unwrap();
    let src = s.outside.join("late-src");
    std::fs::create_dir(&src).unwrap();
    let mut mounts = Mounts(Vec::new());
    // As on a systemd host (where Kata's /run is a shared mount): make the share a shared mount
    // point, so mounts made under it later also reach a daemon that runs in its own mount
    // namespace as a slave (upstream virtiofsd's namespace sandbox).
    let share = s.share.to_str().unwrap();
    mounts.run(&["--bind", share], &s.share);
    mounts.run(&["--make-shared"], &s.share);
    mounts.0.pop(); // --make-shared mounts nothing
    let mut d = start(&s, launch, extra);
    let mut vm = guest(&d, format!("{WAITFOR_SH}\nset -e\n{LATE_SCRIPT}"))
        .spawn()
        .unwrap_or_else(|e| panic!("spawn guest: {e}"));
    vm.wait_for_signal("ready", GUEST_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n--- daemon stderr ---\n{}", d.stderr()));

    // The guest has mounted the share and looked at `late`: now mount over it on the host.
    if source == Source::Tmpfs {
        mounts.run(&["-t", "tmpfs", "-o", "size=4m", "late-src"], &src);
    }
    std::fs::write(src.join("marker"), b"late-marker-7f3a\n").unwrap();
    mounts.run(&["--bind", src.to_str().unwrap()], &late);
    assert_eq!(
        std::fs::read(late.join("marker")).unwrap(),
        b"late-marker-7f3a\n",
        "host bind mount"
    );
    std::fs::write(s.share.join("go"), b"").unwrap();

    let out = finish_vm(&d, vm);
    assert_daemon_exits_cleanly(&mut d);
    let o = &out.stdout;
    assert_eq!(kv(o, "before").as_deref(), Some("0"), "{o}");
    assert!(
        o.contains("marker=late-marker-7f3a"),
        "the guest must see the marker inside the late bind mount:\n{o}"
    );
    let secs = sections(o);
    let lb = LateBind {
        dev_mnt: kv(o, "dev_mnt").unwrap_or_else(|| panic!("{o}")),
        dev_late: kv(o, "dev_late").unwrap_or_else(|| panic!("{o}")),
        mounts: section(&secs, "MOUNTS", o).to_string(),
        out,
    };
    assert_eq!(
        kv(&lb.out.stdout, "before_dev_mnt").as_deref(),
        Some(lb.dev_mnt.as_str()),
        "the share's root device changed: {}",
        lb.out.stdout
    );
    drop(mounts);
    lb
}

pub(super) fn assert_submount(lb: &LateBind, what: &str) {
    assert_ne!(
        lb.dev_mnt, lb.dev_late,
        "{what}: /mnt/late must be a submount (its own st_dev in the guest):\n{}",
        lb.out.stdout
    );
    let listed = lb
        .mounts
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some("/mnt/late"));
    assert!(
        listed,
        "{what}: the guest's /proc/mounts must list /mnt/late:\n{}",
        lb.mounts
    );
}
