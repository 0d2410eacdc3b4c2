//! gardend's own account of each create: the "container created" JSON log
//! line (`GARDEN_LOG_FORMAT=json`) with `total_us` and one `<phase>_us`
//! field per phase.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// The daemon's phases, in report order (`<name>_us` in the log line).
pub const PHASES: [&str; 6] = ["total", "image", "volume", "rootfs", "runtime", "network"];

/// Milliseconds per phase of every wanted create, in [`PHASES`] order.
pub type Phases = [Vec<f64>; PHASES.len()];

/// Reads the phases of the creates of `handles` from gardend's log.
pub fn read(log: &Path, handles: &HashSet<&str>) -> Result<Phases> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    let mut by_handle = HashMap::new();
    for line in text.lines() {
        // Anything that is not a create line (or not JSON) is not ours.
        let Ok(entry) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(fields) = entry.get("fields") else {
            continue;
        };
        if fields.get("message").and_then(Value::as_str) != Some("container created") {
            continue;
        }
        let Some(handle) = fields.get("handle").and_then(Value::as_str) else {
            continue;
        };
        if handles.contains(handle) {
            by_handle.insert(handle.to_string(), phases_of(fields, handle)?);
        }
    }
    if by_handle.len() != handles.len() {
        bail!(
            "{} logged {} of {} creates with \"container created\": does this gardend log its phases as JSON?",
            log.display(),
            by_handle.len(),
            handles.len()
        );
    }
    let mut phases: Phases = Default::default();
    for values in by_handle.values() {
        for (slot, v) in phases.iter_mut().zip(values) {
            slot.push(*v);
        }
    }
    Ok(phases)
}

fn phases_of(fields: &Value, handle: &str) -> Result<[f64; PHASES.len()]> {
    let mut out = [0.0; PHASES.len()];
    for (slot, name) in out.iter_mut().zip(PHASES) {
        let key = format!("{name}_us");
        let us = fields
            .get(&key)
            .and_then(Value::as_u64)
            .with_context(|| format!("the create line of {handle} has no {key}"))?;
        *slot = us as f64 / 1000.0;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_the_wanted_create_lines() {
        let dir = std::env::temp_dir().join(format!("gardend-bench-phases-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let log = dir.join("log");
        let line = |h: &str, total: u64| {
            format!(
                r#"{{"level":"INFO","fields":{{"message":"container created","handle":"{h}","total_us":{total},"image_us":1000,"volume_us":2000,"rootfs_us":3000,"runtime_us":4000,"network_us":500}}}}"#
            )
        };
        let text = [
            "not json".to_string(),
            r#"{"fields":{"message":"serving the Garden API"}}"#.to_string(),
            line("a", 10_000),
            line("warmup", 99_000),
            line("b", 20_000),
        ]
        .join("\n");
        std::fs::write(&log, text).expect("write");
        let wanted: HashSet<&str> = ["a", "b"].into();
        let phases = read(&log, &wanted).expect("read");
        let mut totals = phases[0].clone();
        totals.sort_by(f64::total_cmp);
        assert_eq!(totals, vec![10.0, 20.0]);
        assert_eq!(phases[4], vec![4.0, 4.0]);

        let missing: HashSet<&str> = ["a", "c"].into();
        let err = read(&log, &missing).expect_err("c is missing");
        assert!(err.to_string().contains("1 of 2"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
