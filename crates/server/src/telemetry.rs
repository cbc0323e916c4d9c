//! Request ids, one structured log line per request, and Prometheus metrics at `/metrics`.
//!
//! Logged per request: a random request id (also returned as `x-request-id`), method, route
//! template, status and duration — never query strings, headers or bodies, so no secret or
//! personal data reaches the logs by this path.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;
use tracing::Instrument;

/// Upper bounds (seconds) of the latency histogram buckets.
const BUCKETS_S: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

#[derive(Default)]
struct Series {
    count: u64,
    sum_us: u64,
    buckets: [u64; BUCKETS_S.len()],
}

/// In-process counters, bounded by the number of (method, route, status) combinations —
/// routes are templates, so ids in paths do not multiply series.
#[derive(Default)]
pub struct Metrics {
    series: Mutex<BTreeMap<(String, String, u16), Series>>,
}

impl Metrics {
    fn observe(&self, method: &str, route: &str, status: u16, micros: u64) {
        let Ok(mut map) = self.series.lock() else {
            return;
        };
        let s = map
            .entry((method.to_string(), route.to_string(), status))
            .or_default();
        s.count += 1;
        s.sum_us += micros;
        let secs = micros as f64 / 1e6;
        for (i, b) in BUCKETS_S.iter().enumerate() {
            if secs <= *b {
                s.buckets[i] += 1;
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP konbini_http_requests_total HTTP requests by method, route and status.\n\
             # TYPE konbini_http_requests_total counter\n",
        );
        let Ok(map) = self.series.lock() else {
            return out;
        };
        for ((m, r, st), s) in map.iter() {
            let _ = writeln!(
                out,
                "konbini_http_requests_total{{method=\"{m}\",route=\"{r}\",status=\"{st}\"}} {}",
                s.count
            );
        }
        out.push_str(
            "# HELP konbini_http_request_duration_seconds Time to answer, by method and route.\n\
             # TYPE konbini_http_request_duration_seconds histogram\n",
        );
        let mut by_route: BTreeMap<(String, String), Series> = BTreeMap::new();
        for ((m, r, _), s) in map.iter() {
            let agg = by_route.entry((m.clone(), r.clone())).or_default();
            agg.count += s.count;
            agg.sum_us += s.sum_us;
            for i in 0..BUCKETS_S.len() {
                agg.buckets[i] += s.buckets[i];
            }
        }
        for ((m, r), s) in &by_route {
            for (i, b) in BUCKETS_S.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "konbini_http_request_duration_seconds_bucket{{method=\"{m}\",route=\"{r}\",le=\"{b}\"}} {}",
                    s.buckets[i]
                );
            }
            let _ = writeln!(
                out,
                "konbini_http_request_duration_seconds_bucket{{method=\"{m}\",route=\"{r}\",le=\"+Inf\"}} {}",
                s.count
            );
            let _ = writeln!(
                out,
                "konbini_http_request_duration_seconds_sum{{method=\"{m}\",route=\"{r}\"}} {}",
                s.sum_us as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "konbini_http_request_duration_seconds_count{{method=\"{m}\",route=\"{r}\"}} {}",
                s.count
            );
        }
        out
    }
}

/// Middleware: request id, span, log line, metrics.
pub async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let id = konbini_core::encoding::hex(&crate::secrets::random_bytes::<8>());
    let method = req.method().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let started = Instant::now();
    let mut res = next.run(req).instrument(span.clone()).await;
    let micros = started.elapsed().as_micros() as u64;
    let status = res.status().as_u16();
    span.in_scope(|| tracing::info!(status, duration_ms = micros as f64 / 1000.0, "answered"));
    state.metrics.observe(&method, &route, status, micros);
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    res
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        state.metrics.render(),
    )
        .into_response()
}
