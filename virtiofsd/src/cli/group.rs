//! The node-group flags (`--fs-group`, `--fs-group-*`, `--fs-weight`) and their validation.

use std::path::PathBuf;

use clap::Args;
use limits_api::group::{DEFAULT_WEIGHT, WEIGHT_RANGE};
use ratelimit::group::Budget;
use ratelimit::Limit;

use crate::cli::{quantity, UsageError};
use crate::config::GroupConfig;

/// The group flags, flattened into the command line.
#[derive(Debug, Args, Default)]
pub struct GroupArgs {
    /// Member of the node group whose shared state is PATH (created by the first member, mode
    /// 0600, in a directory only root can write). See "Node groups" below.
    #[arg(long, value_name = "PATH")]
    pub fs_group: Option<PathBuf>,

    /// The group's sustained READ+WRITE bytes per second, shared by its members.
    #[arg(long, value_parser = quantity, value_name = "BYTES")]
    pub fs_group_bw_size: Option<u64>,

    /// The group's READ+WRITE bucket capacity [default: the size].
    #[arg(long, value_parser = quantity, value_name = "BYTES")]
    pub fs_group_bw_burst: Option<u64>,

    /// The group's sustained requests per second, shared by its members.
    #[arg(long, value_parser = quantity, value_name = "REQUESTS")]
    pub fs_group_ops_size: Option<u64>,

    /// The group's request bucket capacity [default: the size].
    #[arg(long, value_parser = quantity, value_name = "REQUESTS")]
    pub fs_group_ops_burst: Option<u64>,

    /// This member's share of the group under contention, 1..=10000 [default: 100].
    #[arg(long, value_name = "N")]
    pub fs_weight: Option<u64>,
}

fn limit(name: &str, size: Option<u64>, burst: Option<u64>) -> Result<Limit, UsageError> {
    match (size.unwrap_or(0), burst) {
        (0, None) => Ok(Limit::UNLIMITED),
        (0, Some(_)) => Err(UsageError(format!(
            "--fs-group-{name}-burst needs a non-zero --fs-group-{name}-size"
        ))),
        (_, Some(0)) => Err(UsageError(format!(
            "--fs-group-{name}-burst must be greater than 0"
        ))),
        (size, burst) => Ok(Limit::with_burst(size, burst.unwrap_or(size))),
    }
}

impl GroupArgs {
    /// The weight, checked.
    pub fn weight(&self) -> Result<u64, UsageError> {
        let w = self.fs_weight.unwrap_or(DEFAULT_WEIGHT);
        if !WEIGHT_RANGE.contains(&w) {
            return Err(UsageError(format!(
                "--fs-weight={w}: must be {} to {}",
                WEIGHT_RANGE.start(),
                WEIGHT_RANGE.end()
            )));
        }
        Ok(w)
    }

    /// The group's configuration, checked (None without `--fs-group`).
    pub fn config(&self) -> Result<Option<GroupConfig>, UsageError> {
        let budget = Budget {
            bw: limit("bw", self.fs_group_bw_size, self.fs_group_bw_burst)?,
            ops: limit("ops", self.fs_group_ops_size, self.fs_group_ops_burst)?,
        };
        let Some(path) = &self.fs_group else {
            if budget != Budget::default() {
                return Err(UsageError("--fs-group-* flags need --fs-group=PATH".into()));
            }
            return Ok(None);
        };
        if budget.bw.is_unlimited() && budget.ops.is_unlimited() {
            return Err(UsageError(format!(
                "--fs-group={}: needs --fs-group-bw-size or --fs-group-ops-size",
                path.display()
            )));
        }
        if !path.is_absolute() {
            return Err(UsageError(format!(
                "--fs-group={}: must be an absolute path",
                path.display()
            )));
        }
        Ok(Some(GroupConfig {
            path: path.clone(),
            budget,
        }))
    }
}
