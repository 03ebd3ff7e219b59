//! The boundary between the operator's arguments and a pod's (`--pod-args-follow`).
//!
//! Kata appends a pod's `virtio_fs_extra_args` annotation after the operator's own
//! `virtio_fs_extra_args`, unfiltered, and the daemon lets the last repeated flag win. An
//! operator who ends `virtio_fs_extra_args` with `--pod-args-follow` declares everything after it
//! untrusted. clap hands those tokens over unparsed, and [`apply`] parses them again with a
//! parser that knows only the `--fs-*` limit flags: any other token (a known daemon flag, an `-o`
//! option, `--`, a positional, a flag added later) is refused with exit 2, and a limit value is
//! accepted only when it tightens the operator's. Kata's own trailing `--xattr` (the Go runtime
//! and runtime-rs append it last when the guest runs SELinux) is accepted as the last token.
//!
//! The node group's flags (`--fs-group`, `--fs-group-*`) are refused there, and `--fs-weight`
//! is accepted only at or below the operator's weight ([`limits_api::group`]).
//!
//! Without the boundary nothing changes: upstream's "last flag wins".

use clap::{Arg, ArgMatches, Command, CommandFactory};
use limits_api::{tighten, Bucket, Field, Flag, RateLimits, FLAGS};

use crate::cli::{Cli, UsageError};

/// The boundary flag, as the operator writes it last in `virtio_fs_extra_args`.
pub const BOUNDARY: &str = "--pod-args-follow";

/// What may follow the boundary: the rate-limit flags of [`FLAGS`], nothing else.
fn pod_command() -> Command {
    let args = FLAGS.iter().map(|f| {
        Arg::new(f.long())
            .long(f.long())
            .value_name(f.unit().value_name())
            .value_parser(crate::cli::quantity)
    });
    Command::new("pod arguments")
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        .args_override_self(true)
        .args(args)
}

/// The pod's values, by flag.
fn pod_limits(m: &ArgMatches) -> RateLimits {
    let mut out = RateLimits::default();
    for f in &FLAGS {
        if let Some(v) = m.get_one::<u64>(f.long()) {
            out.set(f, *v);
        }
    }
    out
}

/// The operator's `--fs-*` fields of `cli`, for `bucket`'s `field`.
fn cli_slot(cli: &mut Cli, bucket: Bucket, field: Field) -> &mut Option<u64> {
    let (size, burst) = match bucket {
        Bucket::Bw => (&mut cli.fs_bw_size, &mut cli.fs_bw_burst),
        Bucket::ReadBw => (&mut cli.fs_read_bw_size, &mut cli.fs_read_bw_burst),
        Bucket::WriteBw => (&mut cli.fs_write_bw_size, &mut cli.fs_write_bw_burst),
        Bucket::Ops => (&mut cli.fs_ops_size, &mut cli.fs_ops_burst),
    };
    match field {
        Field::Size => size,
        Field::Burst => burst,
    }
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
        "thread_pool_size" | "rlimit_nofile" | "max_request_queues" => {
            "it would change the host resources the daemon uses"
        }
        "log_level" | "syslog" | "compat_debug" => "it would change the host's logging",
        "pod_args" => "the boundary may appear only once",
        "fs_group" | "fs_group_bw_size" | "fs_group_bw_burst" | "fs_group_ops_size"
        | "fs_group_ops_burst" => {
            "the node group's budget is the operator's: a lower one would throttle the other tenants"
        }
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

/// The first token that is not a rate-limit flag (a flag's separate value is skipped).
fn first_unknown(tokens: &[String]) -> Option<&str> {
    let mut it = tokens.iter().peekable();
    while let Some(t) = it.next() {
        if Flag::find(t.split('=').next().unwrap_or(t)).is_none() {
            return Some(t);
        }
        if !t.contains('=') && it.peek().is_some_and(|v| !v.starts_with('-')) {
            it.next();
        }
    }
    None
}

/// Takes `--fs-weight` out of the pod's tokens and applies it if it lowers the operator's
/// weight (the only-lower rule of [`limits_api::group`]); the other tokens come back.
fn take_weight(cli: &mut Cli, tokens: &[String]) -> Result<Vec<String>, UsageError> {
    let weight = limits_api::group::WEIGHT;
    let mut rest = Vec::with_capacity(tokens.len());
    let mut it = tokens.iter();
    while let Some(t) = it.next() {
        let value = if let Some(v) = t.strip_prefix(&format!("{weight}=")) {
            v.to_owned()
        } else if t == weight {
            it.next().cloned().unwrap_or_default()
        } else {
            rest.push(t.clone());
            continue;
        };
        let pod: u64 = value
            .parse()
            .map_err(|_| refuse(t, &format!("invalid weight '{value}'")))?;
        let operator = cli
            .group
            .fs_weight
            .unwrap_or(limits_api::group::DEFAULT_WEIGHT);
        let w = limits_api::group::check_weight(operator, pod)
            .map_err(|e| refuse(t, &e.to_string()))?;
        cli.group.fs_weight = Some(w);
    }
    Ok(rest)
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
    let tokens = &take_weight(cli, tokens)?;
    let pod =
        pod_command()
            .try_get_matches_from(tokens)
            .map_err(|e| match first_unknown(tokens) {
                Some(t) => refuse(t, explain(t)),
                // Every token is a limit flag: clap's own complaint about a value.
                None => {
                    let msg = e.to_string();
                    let line = msg.lines().next().unwrap_or_default();
                    let token = tokens.first().map(String::as_str).unwrap_or_default();
                    refuse(token, line.trim_start_matches("error: "))
                }
            })?;
    let mut operator = RateLimits::default();
    for f in &FLAGS {
        if let Some(v) = *cli_slot(cli, f.bucket, f.field) {
            operator.set(f, v);
        }
    }
    let merged = tighten::apply(&operator, &pod_limits(&pod))
        .map_err(|r| refuse(&r.token(), &r.reason()))?;
    for f in &FLAGS {
        *cli_slot(cli, f.bucket, f.field) = merged.value(f);
    }
    if trailing_xattr {
        cli.xattr = true;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The daemon's own `--fs-*` flags are the table's, with its units, and nothing else.
    #[test]
    fn the_cli_limit_flags_are_the_table() {
        let cmd = Cli::command();
        let ours: Vec<_> = cmd
            .get_arguments()
            .filter(|a| {
                a.get_long().is_some_and(|l| {
                    l.starts_with("fs-") && !l.starts_with("fs-group") && l != "fs-weight"
                })
            })
            .collect();
        assert_eq!(ours.len(), FLAGS.len());
        for f in &FLAGS {
            let a = ours
                .iter()
                .find(|a| a.get_long() == Some(f.long()))
                .unwrap_or_else(|| panic!("{f} missing from the command line"));
            let names: Vec<_> = a.get_value_names().unwrap_or_default().to_vec();
            assert_eq!(names, [f.unit().value_name()], "{f}");
        }
        let mut cli = Cli::try_parse_from(["virtiofsd", "--fs-read-bw-burst=7"]).unwrap();
        assert_eq!(
            *cli_slot(&mut cli, Bucket::ReadBw, Field::Burst),
            Some(7),
            "the slot of a flag is its field"
        );
    }
}
