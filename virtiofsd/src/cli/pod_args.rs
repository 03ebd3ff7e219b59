//! The boundary between the operator's arguments and a pod's (`--pod-args-follow`).
//!
//! Kata appends a pod's `virtio_fs_extra_args` annotation after the operator's own
//! `virtio_fs_extra_args`, unfiltered, and the daemon lets the last repeated flag win. An
//! operator who ends `virtio_fs_extra_args` with `--pod-args-follow` declares everything after it
//! untrusted. clap hands those tokens over unparsed, and [`PodArgs`] parses them again with a
//! parser that knows only the `--fs-*` limit flags: any other token (a known daemon flag, an `-o`
//! option, `--`, a positional, a flag added later) is refused with exit 2, and a limit value is
//! accepted only when it tightens the operator's. Kata's own trailing `--xattr` (the Go runtime
//! and runtime-rs append it last when the guest runs SELinux) is accepted as the last token.
//!
//! Without the boundary nothing changes: upstream's "last flag wins".

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, UsageError};

/// The boundary flag, as the operator writes it last in `virtio_fs_extra_args`.
pub const BOUNDARY: &str = "--pod-args-follow";

/// What may follow the boundary: the rate-limit flags, nothing else.
#[derive(Debug, Default, Parser)]
#[command(
    name = "pod arguments",
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true,
    args_override_self = true
)]
pub struct PodArgs {
    #[arg(long, value_parser = crate::cli::quantity)]
    fs_bw_size: Option<u64>,
    #[arg(long, value_parser = crate::cli::quantity)]
    fs_bw_burst: Option<u64>,
    #[arg(long, value_parser = crate::cli::quantity)]
    fs_read_bw_size: Option<u64>,
    #[arg(long, value_parser = crate::cli::quantity)]
    fs_read_bw_burst: Option<u64>,
    #[arg(long, value_parser = crate::cli::quantity)]
    fs_write_bw_size: Option<u64>,
    #[arg(long, value_parser = crate::cli::quantity)]
    fs_write_bw_burst: Option<u64>,
    #[arg(long, value_parser = crate::cli::quantity)]
    fs_ops_size: Option<u64>,
    #[arg(long, value_parser = crate::cli::quantity)]
    fs_ops_burst: Option<u64>,
}

/// Why a daemon flag may not come from a pod, by its clap id.
fn why(id: &str) -> &'static str {
    match id {
        "shared_dir" | "inode_file_handles" | "compat_options" | "readonly" => {
            "it would change what the guest can reach on the host"
        }
        "sandbox" | "seccomp" | "modcaps" => "it would weaken the daemon's confinement",
        "socket_path" | "fd" | "socket_group" | "api_socket" | "tag" => {
            "it would change the daemon's sockets on the host"
        }
        "thread_pool_size" | "rlimit_nofile" => {
            "it would change the host resources the daemon uses"
        }
        "log_level" | "syslog" | "compat_debug" => "it would change the host's logging",
        "pod_args" => "the boundary may appear only once",
        _ => "only the operator may set it",
    }
}

/// A refusal naming the token and the reason.
fn refuse(token: &str, reason: &str) -> UsageError {
    UsageError(format!(
        "pod argument '{token}' after {BOUNDARY} refused: {reason}; a pod may only tighten the \
         --fs-* limits"
    ))
}

/// Names the daemon flag a refused token is, if it is one, for the message.
fn explain(token: &str) -> &'static str {
    if token == "--" {
        return "'--' is not a flag";
    }
    let cmd = Cli::command();
    let found = if let Some(long) = token.strip_prefix("--") {
        let name = long.split('=').next().unwrap_or(long);
        cmd.get_arguments().find(|a| {
            a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|v| v.contains(&name))
        })
    } else if let Some(short) = token.strip_prefix('-').and_then(|s| s.chars().next()) {
        cmd.get_arguments().find(|a| a.get_short() == Some(short))
    } else {
        return "not a flag";
    };
    match found {
        Some(a) if a.get_id() != "unsupported" => why(a.get_id().as_str()),
        _ => "unknown flag",
    }
}

/// The first token that is not a [`PodArgs`] flag (a flag's separate value is skipped).
fn first_unknown(tokens: &[String]) -> Option<&str> {
    let cmd = PodArgs::command();
    let flag = |t: &str| {
        let name = t.strip_prefix("--")?.split('=').next()?;
        cmd.get_arguments()
            .any(|a| a.get_long() == Some(name))
            .then_some(())
    };
    let mut it = tokens.iter().peekable();
    while let Some(t) = it.next() {
        if flag(t).is_none() {
            return Some(t);
        }
        if !t.contains('=') && it.peek().is_some_and(|v| !v.starts_with('-')) {
            it.next();
        }
    }
    None
}

/// One bucket's operator value and the pod's, as given on the command line.
struct Pair<'a> {
    stem: &'static str,
    size: &'a mut Option<u64>,
    burst: &'a mut Option<u64>,
    pod_size: Option<u64>,
    pod_burst: Option<u64>,
}

/// Checks `tokens` (everything after the boundary) and applies them to `cli`: tighter limits,
/// and `--xattr` when it is the last token. Errors name the refused token and why.
pub fn apply(cli: &mut Cli, tokens: &[String]) -> Result<(), UsageError> {
    let (tokens, trailing_xattr) = match tokens.split_last() {
        Some((last, rest)) if last == "--xattr" => (rest, true),
        _ => (tokens, false),
    };
    // clap takes a lone `--` as "end of options" and says nothing; it is not a limit.
    if let Some(t) = tokens.iter().find(|t| t.as_str() == "--") {
        return Err(refuse(t, explain(t)));
    }
    let pod = PodArgs::try_parse_from(tokens).map_err(|e| match first_unknown(tokens) {
        Some(t) => refuse(t, explain(t)),
        // Every token is a limit flag: clap's own complaint about a value.
        None => {
            let msg = e.to_string();
            let line = msg.lines().next().unwrap_or_default();
            let token = tokens.first().map(String::as_str).unwrap_or_default();
            refuse(token, line.trim_start_matches("error: "))
        }
    })?;
    let pairs = [
        Pair {
            stem: "bw",
            size: &mut cli.fs_bw_size,
            burst: &mut cli.fs_bw_burst,
            pod_size: pod.fs_bw_size,
            pod_burst: pod.fs_bw_burst,
        },
        Pair {
            stem: "read-bw",
            size: &mut cli.fs_read_bw_size,
            burst: &mut cli.fs_read_bw_burst,
            pod_size: pod.fs_read_bw_size,
            pod_burst: pod.fs_read_bw_burst,
        },
        Pair {
            stem: "write-bw",
            size: &mut cli.fs_write_bw_size,
            burst: &mut cli.fs_write_bw_burst,
            pod_size: pod.fs_write_bw_size,
            pod_burst: pod.fs_write_bw_burst,
        },
        Pair {
            stem: "ops",
            size: &mut cli.fs_ops_size,
            burst: &mut cli.fs_ops_burst,
            pod_size: pod.fs_ops_size,
            pod_burst: pod.fs_ops_burst,
        },
    ];
    for p in pairs {
        tighten(p)?;
    }
    if trailing_xattr {
        cli.xattr = true;
    }
    Ok(())
}

/// Applies one bucket's pod values when they are no looser than the operator's.
fn tighten(p: Pair<'_>) -> Result<(), UsageError> {
    let op_size = p.size.unwrap_or(0);
    let op_burst = p.burst.unwrap_or(op_size);
    let stem = p.stem;
    if let Some(size) = p.pod_size {
        let token = format!("--fs-{stem}-size={size}");
        if op_size != 0 && (size == 0 || size > op_size) {
            let why = match size {
                0 => format!("it would remove the operator's limit --fs-{stem}-size={op_size}"),
                _ => format!("it is above the operator's --fs-{stem}-size={op_size}"),
            };
            return Err(refuse(&token, &why));
        }
        if size != 0 {
            *p.size = Some(size);
        }
    }
    if let Some(burst) = p.pod_burst {
        let token = format!("--fs-{stem}-burst={burst}");
        if op_size != 0 && burst > op_burst {
            return Err(refuse(
                &token,
                &format!("it is above the operator's burst {op_burst} (--fs-{stem}-burst)"),
            ));
        }
        *p.burst = Some(burst);
    }
    Ok(())
}
