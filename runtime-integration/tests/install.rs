//! `virtiofs-sandbox install` / `uninstall` on configurations in the shape kata-deploy
//! installs under /opt/kata (tests/fixtures/kata/: every section, key, comment line and blank
//! line of Kata's configuration-qemu, -clh and runtime-rs qemu templates, comment text our
//! own), laid out as kata-deploy lays them out: the shipped path a symbolic link to
//! `runtimes/<shim>/configuration-<shim>.toml`, its `config.d/` beside the link's target, and
//! kata-deploy's own drop-ins in it.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use runtime_integration::install::binary::{self, BinaryKind};
use runtime_integration::{CacheMode, VirtioFsConfig};

/// One kata-deploy style installation below a temporary prefix.
struct Kata {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// The path the runtime is given (a symbolic link).
    config: PathBuf,
    /// The resolved base file.
    base: PathBuf,
    hypervisor: &'static str,
    daemon: PathBuf,
}

const UPSTREAM: &[u8] = b"\x7fELF pretend upstream virtiofsd 1.14\n";

/// (fixture, shim, hypervisor section, runtime-rs?)
const SHAPES: [(&str, &str, &str, bool); 3] = [
    ("configuration-qemu.toml", "qemu", "qemu", false),
    ("configuration-clh.toml", "clh", "clh", false),
    (
        "configuration-qemu-runtime-rs.toml",
        "qemu-runtime-rs",
        "qemu",
        true,
    ),
];

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/kata")
            .join(name),
    )
    .unwrap()
}

impl Kata {
    /// kata-deploy's layout for `shape`, installed at a non-default prefix (so, as
    /// kata-deploy does, a `10-installation-prefix.toml` drop-in moves the paths there) with
    /// its `30-kernel-params.toml` drop-in.
    fn new(shape: (&str, &str, &'static str, bool)) -> Kata {
        let (file, shim, hv, rs) = shape;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("opt-kata");
        let mut defaults = root.join("share/defaults/kata-containers");
        if rs {
            defaults.push("runtime-rs");
        }
        let shim_dir = defaults.join("runtimes").join(shim);
        std::fs::create_dir_all(shim_dir.join("config.d")).unwrap();
        std::fs::create_dir_all(root.join("libexec")).unwrap();
        let base = shim_dir.join(file);
        std::fs::write(&base, fixture(file)).unwrap();
        let config = defaults.join(file);
        std::os::unix::fs::symlink(format!("runtimes/{shim}/{file}"), &config).unwrap();
        let daemon = root.join("libexec/virtiofsd");
        std::fs::write(&daemon, UPSTREAM).unwrap();
        let r = root.display();
        std::fs::write(
            shim_dir.join("config.d/10-installation-prefix.toml"),
            format!(
                "[hypervisor.{hv}]\nkernel = \"{r}/share/kata-containers/vmlinux.container\"\n\
                 image = \"{r}/share/kata-containers/kata-containers.img\"\n\
                 virtio_fs_daemon = \"{r}/libexec/virtiofsd\"\n\
                 valid_virtio_fs_daemon_paths = [\"{r}/libexec/virtiofsd\"]\n"
            ),
        )
        .unwrap();
        std::fs::write(
            shim_dir.join("config.d/30-kernel-params.toml"),
            format!("[hypervisor.{hv}]\nkernel_params = \"agent.https_proxy=http://proxy:3128\"\n"),
        )
        .unwrap();
        Kata {
            _dir: dir,
            root,
            config,
            base,
            hypervisor: hv,
            daemon,
        }
    }

    fn dropin(&self) -> PathBuf {
        self.base
            .with_file_name("config.d/90-virtiofsd-ratelimit.toml")
    }

    /// Every file and link below the prefix: path -> sha256 of its bytes (or link target).
    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        fn walk(d: &Path, out: &mut BTreeMap<PathBuf, String>) {
            for e in std::fs::read_dir(d).unwrap() {
                let p = e.unwrap().path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                if m.file_type().is_symlink() {
                    out.insert(
                        p.clone(),
                        format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                    );
                } else if m.is_dir() {
                    out.insert(p.clone(), "dir".into());
                    walk(&p, out);
                } else {
                    let b = std::fs::read(&p).unwrap();
                    out.insert(p, runtime_integration::install::files::sha256(&b));
                }
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root, &mut out);
        out
    }

    fn run(&self, cmd: &str, extra: &[&str]) -> std::process::Output {
        let d = common::daemon_bin();
        let mut args = vec![cmd, "--config", self.config.to_str().unwrap()];
        if cmd == "install" {
            args.extend(["--daemon-source", d.to_str().unwrap()]);
        }
        args.extend(extra);
        Command::new(common::cli_bin())
            .args(&args)
            .output()
            .unwrap()
    }

    fn load(&self) -> VirtioFsConfig {
        VirtioFsConfig::load(&self.config, self.hypervisor).unwrap()
    }
}

fn text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(o: std::process::Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn install_writes_one_dropin_kata_merges_and_uninstall_restores_identical_bytes() {
    for shape in SHAPES {
        let k = Kata::new(shape);
        let before = k.snapshot();
        let base_before = std::fs::read(&k.base).unwrap();
        // Before: the merged configuration is kata-deploy's (the prefix drop-in applied).
        let c = k.load();
        assert_eq!(c.virtio_fs_daemon, k.daemon, "{shape:?}");
        let kata_args = c.virtio_fs_extra_args.clone();

        // --dry-run: a diff, nothing written.
        let out = ok(k.run(
            "install",
            &["--dry-run", "--fs-bw-size=5M", "--fs-bw-burst=8M"],
        ));
        assert!(
            out.contains(&format!("+++ {}", k.dropin().display()))
                && out.contains("+virtio_fs_extra_args = [")
                && out.contains("--fs-bw-size=5000000")
                && out.contains("would install"),
            "{shape:?}: {out}"
        );
        assert_eq!(
            k.snapshot(),
            before,
            "{shape:?}: --dry-run changed something"
        );

        // install: the drop-in, the daemon, the original kept; the base file untouched.
        ok(k.run(
            "install",
            &[
                "--fs-bw-size=5M",
                "--fs-bw-burst=8M",
                "--enable-annotations",
            ],
        ));
        assert_eq!(std::fs::read(&k.base).unwrap(), base_before, "{shape:?}");
        let c = k.load();
        assert_eq!(c.virtio_fs_daemon, k.daemon);
        assert_eq!(
            c.valid_virtio_fs_daemon_paths,
            [k.daemon.display().to_string()]
        );
        let mut want = kata_args.clone();
        want.extend(
            [
                "--fs-bw-size=5000000",
                "--fs-bw-burst=8000000",
                "--pod-args-follow",
            ]
            .map(String::from),
        );
        assert_eq!(c.virtio_fs_extra_args, want, "{shape:?}");
        assert!(c
            .enable_annotations
            .contains(&"virtio_fs_extra_args".to_string()));
        let lim = c.operator_limits();
        assert_eq!(
            (lim.bw.size, lim.bw.burst),
            (Some(5_000_000), Some(8_000_000))
        );
        // Keys install does not set keep the base's and kata-deploy's drop-ins' values.
        assert_eq!(c.virtio_fs_cache, CacheMode::Auto);
        let merged = runtime_integration::dropin::Layers::read(&k.config)
            .unwrap()
            .merge()
            .unwrap();
        assert_eq!(
            merged.table["hypervisor"][k.hypervisor]["kernel_params"].as_str(),
            Some("agent.https_proxy=http://proxy:3128")
        );
        let installed = std::fs::read(&k.daemon).unwrap();
        assert!(installed == std::fs::read(common::daemon_bin()).unwrap());
        assert_eq!(
            binary::identify(&k.daemon),
            BinaryKind::RateLimited(env!("CARGO_PKG_VERSION").into())
        );
        let orig = k.daemon.with_file_name("virtiofsd.orig-upstream");
        assert_eq!(std::fs::read(&orig).unwrap(), UPSTREAM);

        // A second run changes no byte.
        let after = k.snapshot();
        let out = ok(k.run(
            "install",
            &[
                "--fs-bw-size=5M",
                "--fs-bw-burst=8M",
                "--enable-annotations",
            ],
        ));
        assert!(
            !out.contains("written") && !out.contains("installed"),
            "{out}"
        );
        assert_eq!(
            k.snapshot(),
            after,
            "{shape:?}: second install changed bytes"
        );

        // uninstall: every file as it was, byte for byte; nothing added remains.
        ok(k.run("uninstall", &[]));
        assert_eq!(k.snapshot(), before, "{shape:?}: uninstall did not restore");
    }
}

#[test]
fn uninstall_refuses_a_file_changed_since_the_install() {
    let k = Kata::new(SHAPES[0]);
    ok(k.run("install", &["--fs-bw-size=5M"]));
    // Not asked for: enable_annotations is left alone.
    let t = std::fs::read_to_string(k.dropin()).unwrap();
    assert!(!t.contains("enable_annotations"), "{t}");
    // The operator edits the drop-in.
    let mut t = std::fs::read_to_string(k.dropin()).unwrap();
    t.push_str("# tuned by hand\n");
    std::fs::write(k.dropin(), &t).unwrap();
    let snap = k.snapshot();
    let o = k.run("uninstall", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&k.dropin().display().to_string())
            && err.contains("changed since the install"),
        "{err}"
    );
    assert_eq!(k.snapshot(), snap, "a refused uninstall changed something");

    // A Kata upgrade puts its own daemon back: refused too, and the exporter's series says so.
    let k = Kata::new(SHAPES[1]);
    ok(k.run("install", &[]));
    std::fs::write(&k.daemon, b"\x7fELF a newer upstream virtiofsd\n").unwrap();
    let snap = k.snapshot();
    let o = k.run("uninstall", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&k.daemon.display().to_string()));
    assert_eq!(k.snapshot(), snap);
    let paths =
        runtime_integration::daemon_binaries::configured_paths(std::slice::from_ref(&k.config));
    let series = runtime_integration::daemon_binaries::encode(&paths);
    assert!(
        series.contains(&format!(
            "virtiofs_sandbox_daemon_binary_info{{kind=\"other\",path=\"{}\",version=\"\"}} 1",
            k.daemon.display()
        )),
        "{series}"
    );
    // Installing again puts ours back and keeps the newer upstream as the original.
    ok(k.run("install", &[]));
    assert_eq!(
        std::fs::read(k.daemon.with_file_name("virtiofsd.orig-upstream")).unwrap(),
        b"\x7fELF a newer upstream virtiofsd\n"
    );
    ok(k.run("uninstall", &[]));
    assert!(std::fs::read(&k.daemon).unwrap() == b"\x7fELF a newer upstream virtiofsd\n");
}

#[test]
fn bad_flags_exit_2_and_change_nothing() {
    let k = Kata::new(SHAPES[0]);
    let snap = k.snapshot();
    for (args, needle) in [
        (vec!["--bogus"], "--bogus"),
        (vec!["--daemon-path", "virtiofsd"], "--daemon-path"),
        (vec!["--fs-bw-size=fast"], "--fs-bw-size"),
        (vec!["--fs-ops-size=-1"], "--fs-ops-size"),
        (vec!["--hypervisor", "clh"], "--hypervisor clh"),
    ] {
        let o = k.run("install", &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(needle),
            "{args:?}: {}",
            text(&o)
        );
        assert_eq!(k.snapshot(), snap, "{args:?}");
    }
    let o = k.run("uninstall", &["--daemon-path", "rel"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // Not installed: uninstall says so (1) and changes nothing.
    let o = k.run("uninstall", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no install record"));
    assert_eq!(k.snapshot(), snap);
}

#[test]
fn in_place_changes_only_the_keys_it_sets() {
    for shape in SHAPES {
        let k = Kata::new(shape);
        // Without kata-deploy's prefix drop-in, the base file's own keys are what changes.
        std::fs::remove_file(
            k.base
                .with_file_name("config.d/10-installation-prefix.toml"),
        )
        .unwrap();
        let before = k.snapshot();
        let old = std::fs::read_to_string(&k.base).unwrap();
        let d = k.daemon.display().to_string();
        ok(k.run(
            "install",
            &["--in-place", "--daemon-path", &d, "--fs-ops-size=400"],
        ));
        let new = std::fs::read_to_string(&k.base).unwrap();
        assert!(!k.dropin().exists());
        let set = [
            "virtio_fs_daemon =",
            "valid_virtio_fs_daemon_paths =",
            "virtio_fs_extra_args =",
        ];
        let (o, n): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
        assert_eq!(o.len(), n.len(), "{shape:?}: lines added or removed");
        let mut changed = 0;
        for (a, b) in o.iter().zip(&n) {
            if a != b {
                assert!(
                    set.iter().any(|k| a.starts_with(k) && b.starts_with(k)),
                    "{shape:?}: {a:?} -> {b:?}"
                );
                changed += 1;
            }
        }
        assert!(changed >= 2, "{shape:?}: {changed}");
        assert!(new.contains(&format!("virtio_fs_daemon = \"{d}\"\n")));
        assert!(new.ends_with(if old.ends_with('\n') { "\n" } else { "" }));
        assert_eq!(k.load().operator_limits().ops.size, Some(400));
        // Idempotent, then undone byte for byte (the link still a link).
        let after = k.snapshot();
        ok(k.run(
            "install",
            &["--in-place", "--daemon-path", &d, "--fs-ops-size=400"],
        ));
        assert_eq!(k.snapshot(), after);
        ok(k.run("uninstall", &[]));
        assert_eq!(k.snapshot(), before, "{shape:?}");
    }
}

#[test]
fn dropins_merge_as_kata_merges_them() {
    let k = Kata::new(SHAPES[0]);
    let dir = k.base.with_file_name("config.d");
    // Two drop-ins set the same key: the later name wins, and the whole array is replaced.
    std::fs::write(
        dir.join("20-a.toml"),
        "[hypervisor.qemu]\nvirtio_fs_extra_args = [\"--fs-bw-size=1M\", \"--thread-pool-size=4\"]\nvirtio_fs_cache = \"never\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("40-b.toml"),
        "[hypervisor.qemu]\nvirtio_fs_extra_args = [\"--fs-bw-size=2M\"]\n",
    )
    .unwrap();
    let c = k.load();
    assert_eq!(c.virtio_fs_extra_args, ["--fs-bw-size=2M"]);
    assert_eq!(
        c.virtio_fs_cache,
        CacheMode::Never,
        "20-a's other key stays"
    );
    assert_eq!(
        c.virtio_fs_daemon, k.daemon,
        "10-installation-prefix applies"
    );
    assert_eq!(c.virtio_fs_queue_size, 1024, "the base's key stays");
    // Every entry is a drop-in, whatever its name; a key error names the file that set it.
    std::fs::write(
        dir.join("zz-no-suffix"),
        "[hypervisor.qemu]\nvirtio_fs_queue_size = 1000\n",
    )
    .unwrap();
    let e = VirtioFsConfig::load(&k.config, "qemu")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("zz-no-suffix") && e.contains("virtio_fs_queue_size"),
        "{e}"
    );
    std::fs::remove_file(dir.join("zz-no-suffix")).unwrap();
    // A directory in config.d fails the load, as it fails Kata's.
    std::fs::create_dir(dir.join("50-dir")).unwrap();
    let e = VirtioFsConfig::load(&k.config, "qemu")
        .unwrap_err()
        .to_string();
    assert!(e.contains("50-dir"), "{e}");
    std::fs::remove_dir(dir.join("50-dir")).unwrap();

    // install over them: its drop-in applies last, from the others' merged value; it warns
    // about an annotation that lets a pod leave the daemon.
    std::fs::write(
        dir.join("45-ann.toml"),
        "[hypervisor.qemu]\nenable_annotations = [\"shared_.*\"]\n",
    )
    .unwrap();
    let out = ok(k.run("install", &[]));
    assert!(
        out.contains("warning") && out.contains("shared_fs"),
        "{out}"
    );
    std::fs::remove_file(dir.join("45-ann.toml")).unwrap();
    assert_eq!(
        k.load().virtio_fs_extra_args,
        ["--fs-bw-size=2M", "--pod-args-follow"]
    );
    ok(k.run("uninstall", &[]));
    // A user drop-in after ours would override it: install refuses, naming it, writes nothing.
    std::fs::write(
        dir.join("95-user.toml"),
        "[hypervisor.qemu]\nvirtio_fs_extra_args = []\n",
    )
    .unwrap();
    let snap = k.snapshot();
    let o = k.run("install", &[]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("95-user.toml"),
        "{}",
        text(&o)
    );
    assert_eq!(k.snapshot(), snap);
}

/// An install interrupted before its record was written (here: the record removed) is
/// finished by the next run, which still knows the original daemon it kept.
#[test]
fn an_interrupted_install_still_restores_the_original_daemon() {
    let k = Kata::new(SHAPES[2]);
    let before = k.snapshot();
    ok(k.run("install", &[]));
    std::fs::remove_file(k.base.with_file_name("virtiofs-sandbox-install.json")).unwrap();
    std::fs::remove_file(k.dropin()).unwrap();
    ok(k.run("install", &[]));
    ok(k.run("uninstall", &[]));
    assert!(
        std::fs::read(&k.daemon).unwrap() == UPSTREAM,
        "the original is back"
    );
    assert_eq!(k.snapshot(), before);
}
