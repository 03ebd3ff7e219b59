//! `virtiofs-sandbox install` and `uninstall`: put this daemon where a Kata configuration
//! points, and set the configuration's virtio-fs keys, undoably.
//!
//! * **Daemon.** The daemon (`--daemon-source`, default: `virtiofsd` beside this executable,
//!   refused unless it carries this project's build marker) is written to the daemon path
//!   (`--daemon-path`, default: the effective `virtio_fs_daemon`) atomically; the file it
//!   replaces is kept beside it as `PATH.orig-upstream` (a hard link, so the path always holds
//!   a complete binary).
//! * **Configuration.** For each chosen `[hypervisor.<name>]` section (`--hypervisor`,
//!   default: every one) it sets `virtio_fs_daemon`, `valid_virtio_fs_daemon_paths` (that
//!   path only), `virtio_fs_extra_args` (the current arguments, the `--fs-*` limits given on
//!   its command line replacing the current ones, and `--pod-args-follow` last) and, only
//!   with `--enable-annotations`, `enable_annotations` (plus `virtio_fs_extra_args`). By
//!   default these go into one drop-in, `config.d/`[`DROPIN_NAME`] beside the resolved base
//!   file, which stays untouched; `--in-place` edits the base file instead (`toml_edit`:
//!   comments, order and formatting kept; a backup kept beside it).
//! * **Checks first.** The merged result (base plus every drop-in, as Kata merges them,
//!   [`crate::dropin`]) is parsed by this crate's own parser and must have the values set (a
//!   later drop-in overriding one is named and refused) before anything is written.
//! * **Idempotent.** What is written is a function of the configuration without this
//!   install's drop-in and of the flags: a second run writes nothing.
//! * **Undo.** A record ([`record`]) keeps the SHA-256 of everything written. `uninstall`
//!   first checks every file still has the bytes `install` left, and stops (changing nothing)
//!   if someone changed one since; otherwise it restores each file byte for byte (the
//!   backups are renamed back, created files and directories removed).
//!
//! `--dry-run` prints a unified diff of the configuration files (`similar`) and what would
//! happen to the daemon, and writes nothing.

pub mod binary;
pub mod edit;
pub mod files;
pub mod record;

use std::io::Write;
use std::path::{Path, PathBuf};

use limits_api::RateLimits;

use crate::config::VirtioFsConfig;
use crate::dropin::{Layers, Merged};
use crate::error::{Error, Result};
use binary::BinaryKind;
use edit::SectionValues;
use record::{FileRecord, Record};

/// The drop-in's file name (late in the name order, so it applies over kata-deploy's own
/// `10-` to `50-` drop-ins).
pub const DROPIN_NAME: &str = "90-virtiofsd-ratelimit.toml";
/// Suffix of the kept original daemon.
pub const DAEMON_BACKUP_SUFFIX: &str = ".orig-upstream";
/// Suffix of the base file's backup (`--in-place`).
pub const CONFIG_BACKUP_SUFFIX: &str = ".orig-virtiofs-sandbox";

/// What `install` is asked to do.
#[derive(Clone, Debug, Default)]
pub struct InstallOptions {
    /// The base configuration file.
    pub config: PathBuf,
    /// Sections to set (empty: every `[hypervisor.*]` section).
    pub hypervisors: Vec<String>,
    /// Where the daemon goes (default: the effective `virtio_fs_daemon`).
    pub daemon_path: Option<PathBuf>,
    /// The daemon to install (default: `virtiofsd` beside the current executable).
    pub daemon_source: Option<PathBuf>,
    /// Print the changes, write nothing.
    pub dry_run: bool,
    /// Edit the base file instead of writing a drop-in.
    pub in_place: bool,
    /// The `--fs-*` limits given.
    pub limits: RateLimits,
    /// Let pods set `virtio_fs_extra_args` (`enable_annotations`).
    pub enable_annotations: bool,
}

/// A refusal caused by a flag's value (the CLI exits 2 for it).
#[derive(Debug)]
pub struct FlagError(pub String);

/// One configuration file's planned content.
struct FilePlan {
    path: PathBuf,
    /// Where its temporary file is made (never inside `config.d/`).
    tmp_dir: PathBuf,
    before: Option<Vec<u8>>,
    after: Vec<u8>,
    backup: Option<PathBuf>,
}

/// The daemon's planned replacement.
struct DaemonPlan {
    path: PathBuf,
    source: PathBuf,
    bytes: Vec<u8>,
    current: Option<Vec<u8>>,
    current_kind: BinaryKind,
}

fn daemon_source(opts: &InstallOptions) -> Result<PathBuf> {
    match &opts.daemon_source {
        Some(p) => Ok(p.clone()),
        None => {
            let exe = std::env::current_exe().map_err(Error::io("current_exe"))?;
            Ok(exe.with_file_name("virtiofsd"))
        }
    }
}

fn check_effective(merged: &Merged, base: &Path, want: &SectionValues) -> Result<()> {
    let c = VirtioFsConfig::from_merged(merged, base, &want.hypervisor)?;
    let key = |k: &str| format!("hypervisor.{}.{k}", want.hypervisor);
    let mut wrong = Vec::new();
    if c.virtio_fs_daemon != Path::new(&want.daemon) {
        wrong.push("virtio_fs_daemon");
    }
    if c.valid_virtio_fs_daemon_paths != want.valid_paths {
        wrong.push("valid_virtio_fs_daemon_paths");
    }
    if c.virtio_fs_extra_args != want.extra_args {
        wrong.push("virtio_fs_extra_args");
    }
    if let Some(a) = &want.enable_annotations {
        if &c.enable_annotations != a {
            wrong.push("enable_annotations");
        }
    }
    if let Some(k) = wrong.first() {
        let by = merged
            .origin(&key(k))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "?".into());
        return Err(Error::Install(format!(
            "[hypervisor.{}] {k} would still be set by {by} (a later file wins), so the \
             install would not take effect; refused, nothing written",
            want.hypervisor
        )));
    }
    Ok(())
}

/// Runs `install`; messages and the `--dry-run` diff go to `out`. `Ok(Err(_))` is a bad flag.
pub fn install(
    opts: &InstallOptions,
    out: &mut dyn Write,
) -> Result<std::result::Result<(), FlagError>> {
    let layers = Layers::read(&opts.config)?;
    let record_path = Record::path_for(&layers.resolved);
    let old_record = Record::load(&record_path)?;
    let dropin_path = layers.dropin_dir().join(DROPIN_NAME);
    for s in &layers.symlinked_dropins {
        let _ = writeln!(
            out,
            "warning: {} is a symbolic link: the Go runtime follows it, runtime-rs refuses it",
            s.display()
        );
    }

    // The configuration as it is without this install's drop-in.
    let others = if opts.in_place {
        layers.clone()
    } else {
        if layers.files.iter().any(|l| l.path == dropin_path)
            && old_record
                .as_ref()
                .and_then(|r| r.file(&dropin_path))
                .is_none()
        {
            return Err(Error::Install(format!(
                "{} exists but was not written by install (no record of it in {}); refused",
                dropin_path.display(),
                record_path.display()
            )));
        }
        layers.with_dropin(&dropin_path, None)
    };
    let merged_others = others.merge()?;
    let found = merged_others.hypervisors();
    let chosen = if opts.hypervisors.is_empty() {
        found.clone()
    } else {
        opts.hypervisors.clone()
    };
    if chosen.is_empty() {
        return Err(Error::Install(format!(
            "{}: no [hypervisor.*] section",
            opts.config.display()
        )));
    }
    let mut current = Vec::new();
    for hv in &chosen {
        if !found.contains(hv) {
            return Ok(Err(FlagError(format!(
                "--hypervisor {hv}: no [hypervisor.{hv}] section in {} (found: {})",
                opts.config.display(),
                found.join(", ")
            ))));
        }
        let c = VirtioFsConfig::from_merged(&merged_others, &opts.config, hv)?;
        if let Some(why) = c.no_daemon_reason() {
            return Err(Error::Install(format!(
                "[hypervisor.{hv}] {why}; set shared_fs = \"virtio-fs\" first"
            )));
        }
        current.push(c);
    }
    let daemon_path = match &opts.daemon_path {
        Some(p) => p.clone(),
        None => {
            let first = &current[0].virtio_fs_daemon;
            if let Some(c) = current.iter().find(|c| &c.virtio_fs_daemon != first) {
                return Ok(Err(FlagError(format!(
                    "--daemon-path is needed: [hypervisor.{}] and [hypervisor.{}] use different \
                     daemons ({} and {})",
                    current[0].hypervisor,
                    c.hypervisor,
                    first.display(),
                    c.virtio_fs_daemon.display()
                ))));
            }
            first.clone()
        }
    };
    if let Some(r) = &old_record {
        if r.daemon.path != daemon_path {
            return Ok(Err(FlagError(format!(
                "--daemon-path {}: this configuration's install put the daemon at {}; \
                 uninstall first",
                daemon_path.display(),
                r.daemon.path.display()
            ))));
        }
    }
    let daemon_str = daemon_path.to_string_lossy().into_owned();
    let sections: Vec<SectionValues> = current
        .iter()
        .map(|c| SectionValues {
            hypervisor: c.hypervisor.clone(),
            daemon: daemon_str.clone(),
            valid_paths: vec![daemon_str.clone()],
            extra_args: edit::extra_args(&c.virtio_fs_extra_args, &opts.limits),
            enable_annotations: opts
                .enable_annotations
                .then(|| edit::enable_annotations(&c.enable_annotations)),
        })
        .collect();

    // The new files, checked as Kata would read them.
    let config_dir = layers
        .resolved
        .parent()
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    let (plan, new_layers) = if opts.in_place {
        let base = &layers.files[0];
        let text = edit::edit_in_place(&base.text, &sections)
            .map_err(|e| Error::Install(format!("{}: {e}", layers.resolved.display())))?;
        let backup = old_record
            .as_ref()
            .and_then(|r| r.file(&layers.resolved))
            .map(|f| f.backup.clone())
            .unwrap_or_else(|| Some(suffixed(&layers.resolved, CONFIG_BACKUP_SUFFIX)));
        (
            FilePlan {
                path: layers.resolved.clone(),
                tmp_dir: config_dir.clone(),
                before: Some(base.text.clone().into_bytes()),
                after: text.clone().into_bytes(),
                backup,
            },
            layers.with_base(&text),
        )
    } else {
        let text = edit::dropin_text(&opts.config.to_string_lossy(), &sections);
        let before = layers
            .files
            .iter()
            .find(|l| l.path == dropin_path)
            .map(|l| l.text.clone().into_bytes());
        (
            FilePlan {
                path: dropin_path.clone(),
                tmp_dir: config_dir.clone(),
                before,
                after: text.clone().into_bytes(),
                backup: None,
            },
            layers.with_dropin(&dropin_path, Some(&text)),
        )
    };
    let merged = new_layers.merge()?;
    for s in &sections {
        check_effective(&merged, &opts.config, s)?;
        let c = VirtioFsConfig::from_merged(&merged, &opts.config, &s.hypervisor)?;
        for name in ["shared_fs", "virtio_fs_daemon"] {
            if let Some(r) = c.enable_annotations.iter().find(|r| full_match(r, name)) {
                let _ = writeln!(
                    out,
                    "warning: [hypervisor.{}] enable_annotations {r:?} lets a pod set {name}, \
                     which leaves this daemon and every limit (configs/README.md §3a)",
                    s.hypervisor
                );
            }
        }
    }

    // The daemon.
    let source = daemon_source(opts)?;
    let bytes = std::fs::read(&source).map_err(|e| {
        Error::Install(format!(
            "the daemon to install, {}: {e} (give --daemon-source)",
            source.display()
        ))
    })?;
    if !matches!(binary::identify_bytes(&bytes), BinaryKind::RateLimited(_)) {
        return Err(Error::Install(format!(
            "{} is not this project's virtiofsd (no build marker); refused",
            source.display()
        )));
    }
    let cur = files::read_opt(&daemon_path)?;
    let daemon = DaemonPlan {
        current_kind: cur
            .as_deref()
            .map_or(BinaryKind::Missing, binary::identify_bytes),
        current: cur,
        path: daemon_path.clone(),
        source,
        bytes,
    };

    if opts.dry_run {
        print_plan(out, &plan, &daemon)?;
        return Ok(Ok(()));
    }
    apply(
        opts,
        out,
        plan,
        daemon,
        old_record,
        &record_path,
        &layers.dropin_dir(),
    )?;
    Ok(Ok(()))
}

/// Whether the regex `r` matches all of `name` (how the project reads enable_annotations).
fn full_match(r: &str, name: &str) -> bool {
    regex::Regex::new(&format!("^(?:{r})$")).is_ok_and(|re| re.is_match(name))
}

fn suffixed(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

fn print_plan(out: &mut dyn Write, plan: &FilePlan, daemon: &DaemonPlan) -> Result<()> {
    let w = |e| Error::io("writing the diff")(e);
    let before = plan
        .before
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let after = String::from_utf8_lossy(&plan.after);
    if plan.before.as_deref() == Some(&plan.after[..]) {
        writeln!(out, "{}: unchanged", plan.path.display()).map_err(w)?;
    } else {
        let old_name = if plan.before.is_some() {
            plan.path.display().to_string()
        } else {
            "/dev/null".into()
        };
        let diff = similar::TextDiff::from_lines(before.as_ref(), after.as_ref());
        write!(
            out,
            "{}",
            diff.unified_diff()
                .context_radius(3)
                .header(&old_name, &plan.path.display().to_string())
        )
        .map_err(w)?;
    }
    if daemon.current.as_deref() == Some(&daemon.bytes[..]) {
        writeln!(out, "{}: daemon unchanged", daemon.path.display()).map_err(w)?;
    } else {
        let keep = match daemon.current_kind {
            BinaryKind::Other => format!(
                "; the current one kept as {}",
                suffixed(&daemon.path, DAEMON_BACKUP_SUFFIX).display()
            ),
            _ => String::new(),
        };
        writeln!(
            out,
            "{}: would install {} (now: {}){keep}",
            daemon.path.display(),
            daemon.source.display(),
            daemon.current_kind.label()
        )
        .map_err(w)?;
    }
    Ok(())
}

fn apply(
    opts: &InstallOptions,
    out: &mut dyn Write,
    plan: FilePlan,
    daemon: DaemonPlan,
    old: Option<Record>,
    record_path: &Path,
    dropin_dir: &Path,
) -> Result<()> {
    let mut created_dirs = old
        .as_ref()
        .map(|r| r.created_dirs.clone())
        .unwrap_or_default();
    let mut say = |s: String| {
        let _ = writeln!(out, "{s}");
    };

    // The daemon first: a configuration never names a daemon that is not there.
    let old_daemon = old.as_ref().map(|r| r.daemon.clone());
    let daemon_rec = if daemon.current.as_deref() == Some(&daemon.bytes[..]) {
        say(format!("{}: daemon unchanged", daemon.path.display()));
        match old_daemon {
            Some(r) => r,
            None => {
                // No record: an install interrupted before writing it kept the original
                // beside the daemon; otherwise the daemon was already this one.
                let backup_path = suffixed(&daemon.path, DAEMON_BACKUP_SUFFIX);
                let (before, backup) = match files::sha256_of(&backup_path)? {
                    Some(sha) => (Some(sha), Some(backup_path)),
                    None => (Some(files::sha256(&daemon.bytes)), None),
                };
                FileRecord {
                    path: daemon.path.clone(),
                    before_sha256: before,
                    backup,
                    after_sha256: files::sha256(&daemon.bytes),
                }
            }
        }
    } else {
        let backup_path = suffixed(&daemon.path, DAEMON_BACKUP_SUFFIX);
        let (before, backup) = match (&daemon.current, &daemon.current_kind, old_daemon) {
            // Ours (an older build): the original kept by the earlier install stays.
            (Some(_), BinaryKind::RateLimited(_), Some(r)) => (r.before_sha256, r.backup),
            // Ours without a record (an install interrupted before its record was written):
            // the original it kept, if any, is still the original.
            (Some(_), BinaryKind::RateLimited(_), None) => match files::sha256_of(&backup_path)? {
                Some(sha) => (Some(sha), Some(backup_path)),
                None => (None, None),
            },
            // Another daemon (first install, or Kata put its own back): keep it.
            (Some(cur), _, _) => {
                files::backup(&daemon.path, &backup_path)?;
                say(format!(
                    "{}: kept the current daemon as {}",
                    daemon.path.display(),
                    backup_path.display()
                ));
                (Some(files::sha256(cur)), Some(backup_path))
            }
            (None, _, r) => (r.and_then(|r| r.before_sha256), None),
        };
        let dir = daemon.path.parent().unwrap_or(Path::new("/"));
        files::write_atomic(&daemon.path, dir, &daemon.bytes, 0o755)?;
        say(format!(
            "{}: installed {}",
            daemon.path.display(),
            daemon.source.display()
        ));
        FileRecord {
            path: daemon.path.clone(),
            before_sha256: before,
            backup,
            after_sha256: files::sha256(&daemon.bytes),
        }
    };

    // The configuration file.
    let old_file = old.as_ref().and_then(|r| r.file(&plan.path)).cloned();
    let file_rec = if plan.before.as_deref() == Some(&plan.after[..]) {
        say(format!("{}: unchanged", plan.path.display()));
        old_file.unwrap_or(FileRecord {
            path: plan.path.clone(),
            before_sha256: plan.before.as_deref().map(files::sha256),
            backup: None,
            after_sha256: files::sha256(&plan.after),
        })
    } else {
        if !opts.in_place && !dropin_dir.exists() {
            std::fs::create_dir(dropin_dir)
                .map_err(Error::io(format!("creating {}", dropin_dir.display())))?;
            if !created_dirs.iter().any(|d| d == dropin_dir) {
                created_dirs.push(dropin_dir.to_path_buf());
            }
        }
        let (before, backup) = match old_file {
            Some(r) => (r.before_sha256, r.backup),
            None => {
                if let (Some(b), Some(_)) = (&plan.backup, &plan.before) {
                    files::backup(&plan.path, b)?;
                    say(format!("{}: backup {}", plan.path.display(), b.display()));
                }
                (
                    plan.before.as_deref().map(files::sha256),
                    plan.before.as_ref().and(plan.backup.clone()),
                )
            }
        };
        let mode = files::mode_or(&plan.path, 0o644);
        files::write_atomic(&plan.path, &plan.tmp_dir, &plan.after, mode)?;
        say(format!("{}: written", plan.path.display()));
        FileRecord {
            path: plan.path.clone(),
            before_sha256: before,
            backup,
            after_sha256: files::sha256(&plan.after),
        }
    };

    let mut file_recs: Vec<FileRecord> = old.map(|r| r.files).unwrap_or_default();
    file_recs.retain(|f| f.path != file_rec.path);
    file_recs.push(file_rec);
    let rec = Record {
        version: record::RECORD_VERSION,
        config: opts.config.clone(),
        daemon: daemon_rec,
        files: file_recs,
        created_dirs,
    };
    let bytes = rec.to_bytes();
    if files::read_opt(record_path)?.as_deref() != Some(&bytes[..]) {
        let dir = record_path.parent().unwrap_or(Path::new("/"));
        files::write_atomic(record_path, dir, &bytes, 0o644)?;
    }
    Ok(())
}

/// Runs `uninstall`: restores every file the install of `config` changed, or, if any of them
/// changed since, says which and changes nothing (an error).
pub fn uninstall(config: &Path, daemon_path: Option<&Path>, out: &mut dyn Write) -> Result<()> {
    let layers = Layers::read(config)?;
    let record_path = Record::path_for(&layers.resolved);
    let rec = Record::load(&record_path)?.ok_or_else(|| {
        Error::Install(format!(
            "nothing to uninstall: no install record at {}",
            record_path.display()
        ))
    })?;
    if let Some(p) = daemon_path {
        if p != rec.daemon.path {
            return Err(Error::Install(format!(
                "--daemon-path {}: the install put the daemon at {}",
                p.display(),
                rec.daemon.path.display()
            )));
        }
    }
    let all: Vec<&FileRecord> = std::iter::once(&rec.daemon).chain(&rec.files).collect();
    let mut changed = Vec::new();
    for f in &all {
        let now = files::sha256_of(&f.path)?;
        if now.as_deref() != Some(f.after_sha256.as_str()) {
            changed.push(format!(
                "{} changed since the install (sha256 {}; install left {})",
                f.path.display(),
                now.as_deref().unwrap_or("none: removed"),
                f.after_sha256
            ));
        }
        if let (Some(b), Some(sha)) = (&f.backup, &f.before_sha256) {
            if files::sha256_of(b)?.as_deref() != Some(sha.as_str()) {
                changed.push(format!(
                    "the backup {} of {} is gone or changed",
                    b.display(),
                    f.path.display()
                ));
            }
        }
    }
    if !changed.is_empty() {
        return Err(Error::Install(format!(
            "not reverting anything: {}; someone else changed them, so restoring would undo \
             their change (resolve by hand; the record is {})",
            changed.join("; "),
            record_path.display()
        )));
    }
    for f in &all {
        match (&f.backup, &f.before_sha256) {
            (Some(b), _) => {
                files::restore(b, &f.path)?;
                let _ = writeln!(out, "{}: restored from {}", f.path.display(), b.display());
            }
            (None, None) => {
                std::fs::remove_file(&f.path)
                    .map_err(Error::io(format!("removing {}", f.path.display())))?;
                files::sync_dir(f.path.parent().unwrap_or(Path::new("/")));
                let _ = writeln!(out, "{}: removed", f.path.display());
            }
            (None, Some(_)) => {
                let _ = writeln!(out, "{}: unchanged by the install", f.path.display());
            }
        }
    }
    for d in rec.created_dirs.iter().rev() {
        if std::fs::remove_dir(d).is_ok() {
            let _ = writeln!(out, "{}: removed", d.display());
        }
    }
    std::fs::remove_file(&record_path)
        .map_err(Error::io(format!("removing {}", record_path.display())))?;
    files::sync_dir(record_path.parent().unwrap_or(Path::new("/")));
    Ok(())
}
