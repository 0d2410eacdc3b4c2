//! Request counters and latency histograms per route, served at `/metrics`
//! in Prometheus' text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::Shared;

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
struct Series {
    count: u64,
    sum: f64,
    buckets: [u64; BUCKETS.len()],
}

/// Counters by (method, route, status).
#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl Metrics {
    fn record(&self, method: &str, route: &str, status: u16, secs: f64) {
        let mut map = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let s = map
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default();
        s.count += 1;
        s.sum += secs;
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                s.buckets[i] += 1;
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let map = self.series.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::from(
            "# HELP controller_http_requests_total HTTP requests by route and status.\n# TYPE controller_http_requests_total counter\n",
        );
        for ((m, r, st), s) in map.iter() {
            let _ = writeln!(
                out,
                "controller_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{st}\"}} {}",
                s.count
            );
        }
        out.push_str("# HELP controller_http_request_seconds HTTP request latency.\n# TYPE controller_http_request_seconds histogram\n");
        for ((m, r, st), s) in map.iter() {
            let labels = format!("method=\"{m}\",route=\"{r}\",status=\"{st}\"");
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "controller_http_request_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "controller_http_request_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "controller_http_request_seconds_sum{{{labels}}} {}",
                s.sum
            );
            let _ = writeln!(
                out,
                "controller_http_request_seconds_count{{{labels}}} {}",
                s.count
            );
        }
        out
    }
}

/// Middleware recording every request under its route template.
pub async fn track(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    let secs = start.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    s.metrics.record(&method, &route, status, secs);
    tracing::debug!(method, route, status, ms = secs * 1000.0, "request");
    resp
}

/// `GET /metrics`: request series, then (with the Diego scheduler) the
/// BBS gauges and every instance's container metrics.
pub async fn serve(State(s): State<Shared>) -> String {
    let mut out = s.metrics.render();
    if let Some(bbs) = s.bbs.clone() {
        match tokio::task::spawn_blocking(move || bbs.render_gauges()).await {
            Ok(Ok(gauges)) => out.push_str(&gauges),
            Ok(Err(e)) => tracing::warn!(error = %e, "BBS gauges unavailable"),
            Err(e) => tracing::warn!(error = %e, "BBS gauges panicked"),
        }
    }
    out
}
