#![deny(missing_docs)]
//! `vufs-docgen OUT_DIR`: renders the man pages (`man1/*.1`, by `clap_mangen`) and the bash,
//! zsh and fish completions (`completions/`, by `clap_complete`) of the packaged commands from
//! the very `clap` definitions the binaries parse with, so they cannot drift from `--help`.
//!
//! The daemon is packaged as `virtiofsd-ratelimit` (Debian's `qemu-system-common` owns the
//! name `virtiofsd` and its man page): its page and completions carry that name.

use std::fs;
use std::io;
use std::path::Path;

use clap::{Command, CommandFactory};
use clap_complete::Shell;

/// The daemon's name in the package (command, man page, completions).
pub const DAEMON_NAME: &str = "virtiofsd-ratelimit";
/// The node tool's name.
pub const SANDBOX_NAME: &str = "virtiofs-sandbox";

fn main() {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: vufs-docgen OUT_DIR");
        std::process::exit(2);
    };
    if let Err(e) = generate(Path::new(&out)) {
        eprintln!("vufs-docgen: {e}");
        std::process::exit(1);
    }
}

/// The packaged commands, under their packaged names.
fn commands() -> Vec<Command> {
    vec![
        virtiofsd::cli::Cli::command()
            .name(DAEMON_NAME)
            .bin_name(DAEMON_NAME),
        runtime_integration::cli::Cli::command()
            .name(SANDBOX_NAME)
            .bin_name(SANDBOX_NAME),
    ]
}

/// Writes every man page and completion file below `out`.
fn generate(out: &Path) -> io::Result<()> {
    let man = out.join("man1");
    let comp = out.join("completions");
    for d in [&man, &comp] {
        fs::create_dir_all(d)?;
    }
    for cmd in commands() {
        let name = cmd.get_name().to_string();
        write_man(&man, &name, cmd.clone())?;
        // One page per visible subcommand too (`virtiofs-sandbox-start.1`, ...).
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let sub_name = format!("{name}-{}", sub.get_name());
            let page = sub
                .clone()
                .bin_name(format!("{name} {}", sub.get_name()))
                // A one-shot program: the few leaked names live until it exits anyway.
                .name(&*Box::leak(sub_name.clone().into_boxed_str()));
            write_man(&man, &sub_name, page)?;
        }
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut c = cmd.clone();
            clap_complete::generate_to(shell, &mut c, name.clone(), &comp)?;
        }
    }
    Ok(())
}

fn write_man(dir: &Path, name: &str, cmd: Command) -> io::Result<()> {
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut buf)?;
    fs::write(dir.join(format!("{name}.1")), buf)
}
