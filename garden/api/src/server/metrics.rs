//! Request counters, rendered in Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
struct RouteStats {
    by_status: BTreeMap<u16, u64>,
    seconds_total: f64,
}

/// Counts of requests per route and status, and their total duration.
#[derive(Default)]
pub(crate) struct RequestMetrics {
    routes: Mutex<BTreeMap<&'static str, RouteStats>>,
    process_streams: AtomicI64,
}

/// Counts an open process stream while alive.
pub(crate) struct StreamGauge<'a>(&'a RequestMetrics);

impl Drop for StreamGauge<'_> {
    fn drop(&mut self) {
        self.0.process_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RequestMetrics {
    /// Counts one answered request.
    pub(crate) fn record(&self, route: &'static str, status: u16, elapsed: Duration) {
        let mut routes = self
            .routes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let stats = routes.entry(route).or_default();
        *stats.by_status.entry(status).or_default() += 1;
        stats.seconds_total += elapsed.as_secs_f64();
    }

    /// Counts a Run or Attach stream until the guard drops.
    pub(crate) fn process_stream(&self) -> StreamGauge<'_> {
        self.process_streams.fetch_add(1, Ordering::Relaxed);
        StreamGauge(self)
    }

    /// How many requests of `route` were answered with `status`.
    #[cfg(test)]
    pub(crate) fn count(&self, route: &str, status: u16) -> u64 {
        let routes = self
            .routes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        routes
            .get(route)
            .and_then(|stats| stats.by_status.get(&status))
            .copied()
            .unwrap_or(0)
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let routes = self
            .routes
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut text = String::new();
        text.push_str("# HELP garden_api_requests_total Requests answered, by route and status.\n");
        text.push_str("# TYPE garden_api_requests_total counter\n");
        for (route, stats) in routes.iter() {
            for (status, count) in &stats.by_status {
                let _ = writeln!(
                    text,
                    "garden_api_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
                );
            }
        }
        text.push_str(
            "# HELP garden_api_request_seconds_total Time spent answering requests, by route.\n",
        );
        text.push_str("# TYPE garden_api_request_seconds_total counter\n");
        for (route, stats) in routes.iter() {
            let _ = writeln!(
                text,
                "garden_api_request_seconds_total{{route=\"{route}\"}} {}",
                stats.seconds_total
            );
        }
        text.push_str("# HELP garden_api_process_streams Run and Attach streams open now.\n");
        text.push_str("# TYPE garden_api_process_streams gauge\n");
        let _ = writeln!(
            text,
            "garden_api_process_streams {}",
            self.process_streams.load(Ordering::Relaxed)
        );
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_per_route_and_status() {
        let metrics = RequestMetrics::default();
        metrics.record("Info", 200, Duration::from_millis(2));
        metrics.record("Info", 404, Duration::from_millis(1));
        metrics.record("Info", 200, Duration::from_millis(2));
        let gauge = metrics.process_stream();
        let text = metrics.render();
        assert!(
            text.contains("garden_api_requests_total{route=\"Info\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("garden_api_requests_total{route=\"Info\",status=\"404\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("garden_api_process_streams 1\n"), "{text}");
        drop(gauge);
        assert!(metrics.render().contains("garden_api_process_streams 0\n"));
        assert_eq!(metrics.count("Info", 200), 2);
    }
}
