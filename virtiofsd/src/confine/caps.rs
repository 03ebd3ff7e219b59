//! Capabilities: keep only what the passthrough filesystem needs, as upstream virtiofsd does.

use std::io;

use capng::{Action, CUpdate, Set, Type};

use crate::config::CapChange;

/// Kept by default: file ownership and permission overrides for requests made on behalf of
/// guest users, and creating device nodes. DAC_READ_SEARCH is added when inodes are referenced
/// by file handles (open_by_handle_at needs it).
const KEPT: &[&str] = &[
    "chown",
    "dac_override",
    "fowner",
    "fsetid",
    "setgid",
    "setuid",
    "mknod",
    "setfcap",
];

/// Parses `--modcaps=+sys_admin:-chown` (names with or without `cap_`, any case).
pub fn parse_modcaps(s: &str) -> Result<Vec<CapChange>, String> {
    s.split(':')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (add, name) = match p.split_at(1) {
                ("+", n) => (true, n),
                ("-", n) => (false, n),
                _ => return Err(format!("'{p}': each entry must start with + or -")),
            };
            let name = name.to_ascii_lowercase();
            let name = name.strip_prefix("cap_").unwrap_or(&name).to_owned();
            capng::name_to_capability(&name)
                .map_err(|_| format!("'{name}': unknown capability"))?;
            Ok(CapChange { add, name })
        })
        .collect()
}

/// The capabilities to keep for a configuration.
pub fn kept(file_handles: bool, changes: &[CapChange]) -> Vec<String> {
    let mut caps: Vec<String> = KEPT.iter().map(|s| s.to_string()).collect();
    if file_handles {
        caps.push("dac_read_search".into());
    }
    for c in changes {
        caps.retain(|n| *n != c.name);
        if c.add {
            caps.push(c.name.clone());
        }
    }
    caps
}

/// Drops every capability but `keep` from the effective, permitted and bounding sets. A
/// daemon not running as root has nothing to drop.
pub fn drop_all_but(keep: &[String]) -> io::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        log::info!("not running as root: no capabilities to drop");
        return Ok(());
    }
    capng::clear(Set::BOTH);
    let updates: Vec<CUpdate> = keep
        .iter()
        .map(|n| {
            capng::name_to_capability(n).map(|cap| CUpdate {
                action: Action::ADD,
                cap_type: Type::EFFECTIVE | Type::PERMITTED | Type::BOUNDING_SET,
                capability: cap,
            })
        })
        .collect::<Result<_, _>>()
        .map_err(|e| io::Error::other(format!("capabilities: {e}")))?;
    capng::update(updates).map_err(|e| io::Error::other(format!("capabilities: {e}")))?;
    capng::apply(Set::BOTH).map_err(|e| io::Error::other(format!("capabilities: {e}")))?;
    log::info!("capabilities kept: {}", keep.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modcaps() {
        let c = parse_modcaps("+sys_admin:-CAP_CHOWN").unwrap();
        assert_eq!(
            c[0],
            CapChange {
                add: true,
                name: "sys_admin".into()
            }
        );
        assert_eq!(
            c[1],
            CapChange {
                add: false,
                name: "chown".into()
            }
        );
        assert!(parse_modcaps("sys_admin").unwrap_err().contains("+ or -"));
        assert!(parse_modcaps("+frobnicate")
            .unwrap_err()
            .contains("unknown"));
        let k = kept(true, &c);
        assert!(k.contains(&"sys_admin".into()) && k.contains(&"dac_read_search".into()));
        assert!(!k.contains(&"chown".into()));
    }
}
