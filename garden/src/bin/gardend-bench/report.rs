//! The figures of one run, as text for people or one JSON object.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use crate::stats::{summarize, Summary};

/// The target: mean client-observed Create at most this (ms).
pub const TARGET_MEAN_CREATE_MS: f64 = 50.0;

/// One named row of figures (milliseconds).
pub struct Row {
    pub name: &'static str,
    pub summary: Summary,
}

impl Row {
    /// `None` without samples.
    pub fn new(name: &'static str, samples: &[f64]) -> Option<Row> {
        Some(Row {
            name,
            summary: summarize(samples)?,
        })
    }
}

pub struct Results {
    /// How the run was set up, as (label, value) lines.
    pub setup: Vec<(&'static str, String)>,
    /// Client-observed gardend calls: create, run, destroy, cycle.
    pub gardend: Vec<Row>,
    /// gardend's own phases of create, from its log.
    pub phases: Vec<Row>,
    /// The runc peer's steps: create, start, wait, delete, cycle; absent
    /// with --no-runc.
    pub runc: Vec<Row>,
}

impl Results {
    fn find<'a>(rows: &'a [Row], name: &str) -> Option<&'a Summary> {
        rows.iter().find(|r| r.name == name).map(|r| &r.summary)
    }

    pub fn mean_create(&self) -> f64 {
        Self::find(&self.gardend, "create").map_or(f64::NAN, |s| s.mean)
    }

    pub fn target_met(&self) -> bool {
        self.mean_create() <= TARGET_MEAN_CREATE_MS
    }

    /// gardend's cycle over runc's: (p50, mean).
    pub fn ratio(&self) -> Option<(f64, f64)> {
        let ours = Self::find(&self.gardend, "cycle")?;
        let runc = Self::find(&self.runc, "cycle")?;
        Some((ours.p50 / runc.p50, ours.mean / runc.mean))
    }

    pub fn text(&self) -> String {
        let mut s = String::from(
            "gardend-bench: create + run /bin/true + destroy through gardend, concurrent clients\n",
        );
        for (label, value) in &self.setup {
            let _ = writeln!(s, "  {label:<11} {value}");
        }
        table(&mut s, "gardend, as its clients see it", &self.gardend);
        table(&mut s, "gardend's create by phase (its log)", &self.phases);
        if !self.runc.is_empty() {
            table(
                &mut s,
                "runc peer: create+start+wait+delete of /bin/true, same concurrency, NO disk limit",
                &self.runc,
            );
        }
        let _ = writeln!(s);
        if let Some((p50, mean)) = self.ratio() {
            let _ = writeln!(
                s,
                "  ratio gardend cycle / runc cycle: p50 {p50:.2}, mean {mean:.2}"
            );
        }
        let verdict = if self.target_met() { "PASS" } else { "FAIL" };
        let _ = writeln!(
            s,
            "  target mean Create <= {TARGET_MEAN_CREATE_MS} ms: {verdict} (mean {:.2} ms)",
            self.mean_create()
        );
        s
    }

    pub fn json(&self) -> Value {
        let rows = |rows: &[Row]| -> Map<String, Value> {
            rows.iter()
                .map(|r| {
                    let v = json!({
                        "p50_ms": round(r.summary.p50),
                        "p95_ms": round(r.summary.p95),
                        "mean_ms": round(r.summary.mean),
                    });
                    (r.name.to_string(), v)
                })
                .collect()
        };
        let setup: Map<String, Value> = self
            .setup
            .iter()
            .map(|(k, v)| (k.trim_end_matches(':').to_string(), json!(v)))
            .collect();
        json!({
            "setup": setup,
            "gardend": rows(&self.gardend),
            "gardend_create_phases": rows(&self.phases),
            "runc": rows(&self.runc),
            "ratio_cycle_p50": self.ratio().map(|r| round(r.0)),
            "ratio_cycle_mean": self.ratio().map(|r| round(r.1)),
            "target_mean_create_ms": TARGET_MEAN_CREATE_MS,
            "target_met": self.target_met(),
        })
    }
}

fn table(s: &mut String, title: &str, rows: &[Row]) {
    let _ = writeln!(s, "\n  {title}:");
    let _ = writeln!(
        s,
        "    {:<16} {:>9} {:>9} {:>9}",
        "", "p50 ms", "p95 ms", "mean ms"
    );
    for r in rows {
        let x = &r.summary;
        let _ = writeln!(
            s,
            "    {:<16} {:>9.2} {:>9.2} {:>9.2}",
            r.name, x.p50, x.p95, x.mean
        );
    }
}

/// Microsecond precision is all the figures carry.
fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}
