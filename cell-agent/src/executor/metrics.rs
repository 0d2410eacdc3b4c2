//! Container metrics from garden's BulkMetrics: CPU as a fraction of one
//! core over the last interval, memory and disk use, network bytes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use garden_api::types::Metrics;
use serde::{Deserialize, Serialize};

/// One container's use, as last sampled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerMetrics {
    /// CPU time per wall time since the previous sample (1.0 = one core);
    /// the first sample averages over the container's life.
    pub cpu_fraction: f64,
    /// CPU time used so far.
    pub cpu_total: Duration,
    /// Memory counted toward the limit.
    pub memory_bytes: u64,
    /// The memory limit (0: none).
    pub memory_limit_bytes: u64,
    /// Bytes the container's own writes take.
    pub disk_bytes: u64,
    /// The disk limit of those writes (0: none).
    pub disk_limit_bytes: u64,
    /// Received bytes.
    pub rx_bytes: u64,
    /// Sent bytes.
    pub tx_bytes: u64,
    /// Time since the container was created.
    pub age: Duration,
    /// When the sample was taken.
    pub sampled_at: SystemTime,
}

/// The previous sample's CPU counter and time, per container.
#[derive(Default)]
pub(crate) struct Sampler {
    previous: BTreeMap<String, (Duration, Instant)>,
}

impl Sampler {
    /// Turns garden's metrics into ours; forgets containers not in `all`.
    pub(crate) fn sample(
        &mut self,
        all: &BTreeMap<String, Metrics>,
        now: Instant,
    ) -> BTreeMap<String, ContainerMetrics> {
        self.previous.retain(|guid, _| all.contains_key(guid));
        let mut out = BTreeMap::new();
        for (guid, m) in all {
            let cpu_total = Duration::from_nanos(m.cpu.usage);
            let cpu_fraction = match self.previous.get(guid) {
                Some((cpu_before, at)) if now > *at => {
                    cpu_total.saturating_sub(*cpu_before).as_secs_f64()
                        / now.duration_since(*at).as_secs_f64()
                }
                _ if !m.age.is_zero() => cpu_total.as_secs_f64() / m.age.as_secs_f64(),
                _ => 0.0,
            };
            self.previous.insert(guid.clone(), (cpu_total, now));
            out.insert(
                guid.clone(),
                ContainerMetrics {
                    cpu_fraction,
                    cpu_total,
                    memory_bytes: m.memory.total_usage_toward_limit,
                    memory_limit_bytes: 0,
                    disk_bytes: m.disk.exclusive_bytes_used,
                    disk_limit_bytes: 0,
                    rx_bytes: m.network.rx_bytes,
                    tx_bytes: m.network.tx_bytes,
                    age: m.age,
                    sampled_at: SystemTime::now(),
                },
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(cpu_ns: u64, age: Duration) -> Metrics {
        let mut m = Metrics::default();
        m.cpu.usage = cpu_ns;
        m.age = age;
        m.memory.total_usage_toward_limit = 42;
        m
    }

    #[test]
    fn cpu_is_a_fraction_of_the_interval() {
        let mut sampler = Sampler::default();
        let t0 = Instant::now();
        let first = BTreeMap::from([(
            "a".to_string(),
            metrics(1_000_000_000, Duration::from_secs(4)),
        )]);
        let out = sampler.sample(&first, t0);
        assert!((out["a"].cpu_fraction - 0.25).abs() < 1e-9);
        assert_eq!(out["a"].memory_bytes, 42);
        let second = BTreeMap::from([(
            "a".to_string(),
            metrics(2_000_000_000, Duration::from_secs(6)),
        )]);
        let out = sampler.sample(&second, t0 + Duration::from_secs(2));
        assert!((out["a"].cpu_fraction - 0.5).abs() < 1e-9);
        let out = sampler.sample(&BTreeMap::new(), t0 + Duration::from_secs(3));
        assert!(out.is_empty());
        assert!(sampler.previous.is_empty());
    }
}
