//! The `install` and `uninstall` subcommands ([`crate::install`]).

use std::path::PathBuf;

use clap::Args;

use super::LimitArgs;
use crate::error::Result;
use crate::install::{self, InstallOptions};

fn absolute(s: &str) -> std::result::Result<PathBuf, String> {
    if s.starts_with('/') {
        Ok(PathBuf::from(s))
    } else {
        Err(format!("{s:?} is not an absolute path"))
    }
}

/// `install`'s flags.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Kata's base configuration file (drop-ins in config.d/ beside it are merged).
    #[arg(long)]
    pub config: PathBuf,
    /// A hypervisor section to set, [hypervisor.NAME] (repeatable; default: every one).
    #[arg(long = "hypervisor", value_name = "NAME")]
    pub hypervisors: Vec<String>,
    /// Where the daemon goes (default: the effective virtio_fs_daemon).
    #[arg(long, value_parser = absolute)]
    pub daemon_path: Option<PathBuf>,
    /// The daemon to install (default: virtiofsd beside this executable).
    #[arg(long, value_parser = absolute)]
    pub daemon_source: Option<PathBuf>,
    /// Print a diff of the changes and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Edit the base file in place (comments kept) instead of writing a drop-in.
    #[arg(long)]
    pub in_place: bool,
    /// Let pods pass their own (tighter) limits: adds virtio_fs_extra_args to enable_annotations.
    #[arg(long)]
    pub enable_annotations: bool,
    /// The sandbox-wide limits (replace the configuration's --fs-* flags when any is given).
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// `uninstall`'s flags.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// The base configuration file given to install.
    #[arg(long)]
    pub config: PathBuf,
    /// The daemon path (default: the one the install record names; must match it).
    #[arg(long, value_parser = absolute)]
    pub daemon_path: Option<PathBuf>,
}

/// Runs `install`: 0 done, 2 a bad flag value.
pub fn run_install(a: InstallArgs) -> Result<i32> {
    let opts = InstallOptions {
        config: a.config,
        hypervisors: a.hypervisors,
        daemon_path: a.daemon_path,
        daemon_source: a.daemon_source,
        dry_run: a.dry_run,
        in_place: a.in_place,
        limits: a.limits.limits,
        enable_annotations: a.enable_annotations,
    };
    let mut out = std::io::stdout().lock();
    match install::install(&opts, &mut out)? {
        Ok(()) => Ok(0),
        Err(install::FlagError(m)) => {
            eprintln!("virtiofs-sandbox: error: {m}");
            Ok(2)
        }
    }
}

/// Runs `uninstall`.
pub fn run_uninstall(a: UninstallArgs) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    install::uninstall(&a.config, a.daemon_path.as_deref(), &mut out)?;
    Ok(0)
}
