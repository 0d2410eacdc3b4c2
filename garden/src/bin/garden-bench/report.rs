//! The figures of one bench run, as text for people or one JSON object.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::{json, Map, Value};

use crate::driver::PHASES;
use crate::stats::Summary;

/// The target: our p50 at most a quarter of runc's.
pub const TARGET_RATIO: f64 = 0.25;

pub struct Results {
    pub iterations: u32,
    pub warmup: u32,
    pub rootfs: PathBuf,
    pub ours_path: PathBuf,
    pub runc_path: PathBuf,
    pub ours: Summary,
    pub runc: Summary,
    /// Median milliseconds of each of our phases, in [`PHASES`] order.
    pub phases: [f64; PHASES.len()],
}

impl Results {
    pub fn ratio_p50(&self) -> f64 {
        self.ours.p50 / self.runc.p50
    }

    pub fn ratio_p95(&self) -> f64 {
        self.ours.p95 / self.runc.p95
    }

    pub fn target_met(&self) -> bool {
        self.ratio_p50() <= TARGET_RATIO
    }

    pub fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "garden-bench: create+start+wait+delete of /bin/true, runtimes alternating"
        );
        let _ = writeln!(
            s,
            "  iterations: {} each (after {} warm-up each)",
            self.iterations, self.warmup
        );
        let _ = writeln!(
            s,
            "  bundle:     runc spec defaults, rootfs copied from {}",
            self.rootfs.display()
        );
        let _ = writeln!(
            s,
            "  state:      both runtimes' --root on tmpfs (/dev/shm), as /run on hosts"
        );
        let _ = writeln!(s, "  ours:       {}", self.ours_path.display());
        let _ = writeln!(s, "  runc:       {}", self.runc_path.display());
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  {:<12} {:>9} {:>9} {:>9}",
            "runtime", "p50 ms", "p95 ms", "mean ms"
        );
        for (name, sum) in [("garden-runc", &self.ours), ("runc", &self.runc)] {
            let _ = writeln!(
                s,
                "  {name:<12} {:>9.2} {:>9.2} {:>9.2}",
                sum.p50, sum.p95, sum.mean
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "  ratio garden-runc/runc: p50 {:.3}, p95 {:.3}",
            self.ratio_p50(),
            self.ratio_p95()
        );
        let verdict = if self.target_met() {
            "target met"
        } else {
            "target NOT met"
        };
        let _ = writeln!(s, "  target p50 ratio <= {TARGET_RATIO}: {verdict}");
        let _ = writeln!(s);
        let _ = writeln!(s, "  garden-runc phases (median ms):");
        for (name, ms) in PHASES.iter().zip(self.phases) {
            let label = if *name == "create" {
                "create total"
            } else {
                name
            };
            let _ = writeln!(s, "    {label:<13} {ms:>7.2}");
        }
        s
    }

    pub fn json(&self) -> Value {
        let summary = |path: &PathBuf, sum: &Summary| {
            json!({
                "path": path,
                "p50_ms": round(sum.p50),
                "p95_ms": round(sum.p95),
                "mean_ms": round(sum.mean),
            })
        };
        let phases: Map<String, Value> = PHASES
            .iter()
            .zip(self.phases)
            .map(|(n, ms)| ((*n).to_string(), json!(round(ms))))
            .collect();
        json!({
            "iterations": self.iterations,
            "warmup": self.warmup,
            "rootfs": self.rootfs,
            "ours": summary(&self.ours_path, &self.ours),
            "runc": summary(&self.runc_path, &self.runc),
            "ratio_p50": round(self.ratio_p50()),
            "ratio_p95": round(self.ratio_p95()),
            "target_ratio": TARGET_RATIO,
            "target_met": self.target_met(),
            "phases_median_ms": phases,
        })
    }
}

/// Microsecond precision is all the figures carry.
fn round(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}
