//! The node-group flags in a pod's `virtio_fs_extra_args` annotation: `--fs-group` and every
//! `--fs-group-*` flag are refused (the budget is the operator's), and `--fs-weight` is
//! accepted only at or below the operator's weight (its last `--fs-weight` in
//! `virtio_fs_extra_args`, else the default) — the rule of [`limits_api::group`].

use limits_api::group::{check_weight, is_operator_only, DEFAULT_WEIGHT, WEIGHT};

/// The operator's weight: the last `--fs-weight` of its arguments, else the default.
pub fn operator_weight(args: &[String]) -> u64 {
    let mut w = DEFAULT_WEIGHT;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix(&format!("{WEIGHT}=")) {
            w = v.parse().unwrap_or(w);
        } else if a == WEIGHT {
            w = it.next().and_then(|v| v.parse().ok()).unwrap_or(w);
        }
    }
    w
}

/// Splits a pod's annotation value (a JSON array) into its weight (checked against
/// `operator`) and the other flags (as a JSON array again, for the limit rules). A group
/// flag is refused.
pub fn take_pod_weight(
    json: &str,
    operator: u64,
) -> std::result::Result<(Option<u64>, String), String> {
    let Ok(args) = serde_json::from_str::<Vec<String>>(json) else {
        return Ok((None, json.to_string())); // the limit parser names the JSON error
    };
    let mut rest = Vec::with_capacity(args.len());
    let mut weight = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let name = a.split('=').next().unwrap_or(a);
        if is_operator_only(name) {
            return Err(format!(
                "{a:?} is not allowed: the node group's budget is the operator's (a lower one \
                 would throttle the other tenants)"
            ));
        }
        if name != WEIGHT {
            rest.push(a.clone());
            continue;
        }
        let raw = match a.split_once('=') {
            Some((_, v)) => v.to_string(),
            None => it.next().cloned().unwrap_or_default(),
        };
        let pod: u64 = raw
            .parse()
            .map_err(|_| format!("{WEIGHT}={raw}: not a weight (1..=10000)"))?;
        if pod == 0 {
            return Err(format!("{WEIGHT}=0: a weight is at least 1"));
        }
        weight = Some(check_weight(operator, pod).map_err(|e| e.to_string())?);
    }
    Ok((weight, serde_json::to_string(&rest).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_may_lower_its_weight_only_and_never_touch_the_group() {
        let op = operator_weight(&["--fs-weight=200".into(), "--xattr".into()]);
        assert_eq!(op, 200);
        assert_eq!(operator_weight(&[]), 100);
        let (w, rest) = take_pod_weight(r#"["--fs-weight=50","--fs-bw-size=1M"]"#, op).unwrap();
        assert_eq!((w, rest.as_str()), (Some(50), r#"["--fs-bw-size=1M"]"#));
        let e = take_pod_weight(r#"["--fs-weight","201"]"#, op).unwrap_err();
        assert!(e.contains("above the operator's 200"), "{e}");
        let e = take_pod_weight(r#"["--fs-group-bw-size=1"]"#, op).unwrap_err();
        assert!(e.contains("operator's"), "{e}");
        assert!(take_pod_weight(r#"["--fs-group=/x"]"#, op).is_err());
    }
}
