//! A complete, realistic Kata configuration.toml and the shipped configs/ files.

mod common;

use std::path::Path;

use runtime_integration::annotations;
use runtime_integration::limits::RateLimits;
use runtime_integration::{CacheMode, Error, SharedFs, VirtioFsConfig};

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kata-configuration-qemu.toml")
}

#[test]
fn realistic_kata_configuration_parses() {
    let c = VirtioFsConfig::load(fixture(), "qemu").unwrap();
    assert_eq!(c.hypervisor, "qemu");
    assert_eq!(c.shared_fs, SharedFs::VirtioFs);
    assert_eq!(c.virtio_fs_daemon, Path::new("/opt/kata/libexec/virtiofsd"));
    assert_eq!(
        c.valid_virtio_fs_daemon_paths,
        ["/opt/kata/libexec/virtiofsd"]
    );
    assert_eq!(c.virtio_fs_cache, CacheMode::Auto);
    assert_eq!(c.virtio_fs_cache_size, 0);
    assert_eq!(c.virtio_fs_queue_size, 1024);
    assert_eq!(
        c.virtio_fs_extra_args,
        [
            "--fs-bw-burst=20000000",
            "--fs-bw-size=10000000",
            "--thread-pool-size=1",
            "--announce-submounts"
        ]
    );
    assert_eq!(
        c.enable_annotations,
        ["enable_iommu", "virtio_fs_extra_args", "kernel_params"]
    );
    let l: RateLimits = c.operator_limits();
    assert_eq!(
        (l.bw.size, l.bw.burst),
        (Some(10_000_000), Some(20_000_000))
    );
    assert!(c.spawns_daemon());
    // Other sections are not hypervisors of ours.
    let e = VirtioFsConfig::load(fixture(), "clh")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no [hypervisor.clh] section (found: qemu)"),
        "{e}"
    );
}

#[test]
fn fixture_key_errors_name_key_and_file() {
    let text = std::fs::read_to_string(fixture()).unwrap();
    for (from, to, key) in [
        (
            "virtio_fs_queue_size = 1024",
            "virtio_fs_queue_size = 1000",
            "virtio_fs_queue_size",
        ),
        (
            "virtio_fs_queue_size = 1024",
            "virtio_fs_queue_size = 4096",
            "virtio_fs_queue_size",
        ),
        (
            "virtio_fs_queue_size = 1024",
            "virtio_fs_queue_size = \"1024\"",
            "virtio_fs_queue_size",
        ),
        (
            "virtio_fs_cache = \"auto\"",
            "virtio_fs_cache = \"none\"",
            "virtio_fs_cache",
        ),
        (
            "virtio_fs_cache_size = 0",
            "virtio_fs_cache_size = 1024",
            "virtio_fs_cache_size",
        ),
        (
            "shared_fs = \"virtio-fs\"",
            "shared_fs = [\"virtio-fs\"]",
            "shared_fs",
        ),
    ] {
        let bad = text.replacen(from, to, 1);
        assert_ne!(bad, text);
        let e = VirtioFsConfig::from_toml_str(&bad, "/etc/kata/configuration.toml", "qemu")
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::ConfigKey { .. }), "{msg}");
        assert!(
            msg.starts_with("/etc/kata/configuration.toml: [hypervisor.qemu] ")
                && msg.contains(key),
            "{to}: {msg}"
        );
    }
    let nydus = text.replacen(
        "shared_fs = \"virtio-fs\"",
        "shared_fs = \"virtio-fs-nydus\"",
        1,
    );
    let e = VirtioFsConfig::from_toml_str(&nydus, "/f", "qemu").unwrap_err();
    assert!(
        matches!(e, Error::NotSupported(_)) && e.to_string().contains("not supported"),
        "{e}"
    );
    for fs in ["virtio-9p", "none"] {
        let t = text.replacen(
            "shared_fs = \"virtio-fs\"",
            &format!("shared_fs = \"{fs}\""),
            1,
        );
        let c = VirtioFsConfig::from_toml_str(&t, "/f", "qemu").unwrap();
        assert!(!c.spawns_daemon());
        assert!(c
            .no_daemon_reason()
            .unwrap()
            .contains("no virtio-fs daemon"));
    }
}

#[test]
fn shipped_configs_parse() {
    let root = common::workspace_root();
    for (file, hv) in [
        ("configs/configuration-qemu.toml", "qemu"),
        ("configs/configuration-clh.toml", "clh"),
    ] {
        let c = VirtioFsConfig::load(root.join(file), hv).unwrap();
        assert_eq!(
            c.virtio_fs_daemon,
            Path::new("/opt/kata/libexec/virtiofsd"),
            "{file}"
        );
        assert_eq!(
            c.valid_virtio_fs_daemon_paths,
            ["/opt/kata/libexec/virtiofsd"],
            "{file}"
        );
        assert_eq!(
            c.virtio_fs_extra_args,
            [
                "--fs-bw-burst=20000000",
                "--fs-bw-size=10000000",
                "--thread-pool-size=1",
                "--announce-submounts",
                "--pod-args-follow"
            ],
            "{file}"
        );
        // The pod annotation of configs/pod-rate-limited.yaml is accepted.
        let pod = std::fs::read_to_string(root.join("configs/pod-rate-limited.yaml")).unwrap();
        let line = pod
            .lines()
            .find(|l| {
                l.trim_start()
                    .starts_with(annotations::VIRTIO_FS_EXTRA_ARGS)
            })
            .expect("annotation in the pod manifest");
        let value = line.split_once(": ").unwrap().1.trim().trim_matches('\'');
        let mut a = std::collections::BTreeMap::new();
        a.insert(
            annotations::VIRTIO_FS_EXTRA_ARGS.to_string(),
            value.to_string(),
        );
        let out = annotations::apply(&c, &a).unwrap();
        assert_eq!(out.operator_limits().bw.size, Some(5_000_000));
        assert_eq!(out.operator_limits().bw.burst, Some(5_000_000));
    }
}
