//! Throttles kept in the database (table `code_failures`), so every node sees the same counts:
//! a subject (such as `signup:ip:203.0.113.9`) counts events in a fixed window, and a limit
//! reached answers `429` with `Retry-After` until the window ends.

use crate::error::ApiError;
use konbini_store::{Conn, StoreError, stores};
use std::net::IpAddr;

/// One limit: at most `limit` events for `subject` per `window_ms`.
#[derive(Debug, Clone)]
pub struct Limit {
    pub subject: String,
    pub limit: i64,
    pub window_ms: i64,
}

impl Limit {
    pub fn new(subject: String, limit: i64, window_ms: i64) -> Limit {
        Limit {
            subject,
            limit,
            window_ms,
        }
    }
}

/// The client's network: the /24 of an IPv4 address, the /48 of an IPv6 one.
pub fn network(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
    }
}

/// The per-IP and per-network limits of one kind of request.
pub fn per_client(kind: &str, ip: IpAddr, per_ip: i64, per_net: i64, window_ms: i64) -> Vec<Limit> {
    vec![
        Limit::new(format!("{kind}:ip:{ip}"), per_ip, window_ms),
        Limit::new(format!("{kind}:net:{}", network(ip)), per_net, window_ms),
    ]
}

/// The first exhausted limit, as milliseconds until its window ends.
pub fn exhausted(
    c: &mut dyn Conn,
    limits: &[Limit],
    now_ms: i64,
) -> Result<Option<i64>, StoreError> {
    for l in limits {
        let (n, start) = stores::failures(c, &l.subject, now_ms, l.window_ms)?;
        if n >= l.limit {
            return Ok(Some(start + l.window_ms - now_ms));
        }
    }
    Ok(None)
}

/// Counts one event against every limit.
pub fn hit(c: &mut dyn Conn, limits: &[Limit], now_ms: i64) -> Result<(), StoreError> {
    for l in limits {
        stores::record_code_failure(c, &l.subject, now_ms, l.window_ms)?;
    }
    Ok(())
}

/// Checks the limits and, if none is exhausted, counts this request against them; the
/// answer to give when one is.
pub fn take(
    c: &mut dyn Conn,
    limits: &[Limit],
    now_ms: i64,
) -> Result<Result<(), ApiError>, StoreError> {
    if let Some(ms) = exhausted(c, limits, now_ms)? {
        return Ok(Err(too_many(ms)));
    }
    hit(c, limits, now_ms)?;
    Ok(Ok(()))
}

/// `429` with `Retry-After`.
pub fn too_many(retry_after_ms: i64) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::TOO_MANY_REQUESTS,
        kind: "rate_limit_error",
        code: "too_many_attempts",
        message: "Too many attempts; wait and try again.".into(),
        param: None,
        retry_after_s: Some(u64::try_from((retry_after_ms.max(1000) + 999) / 1000).unwrap_or(1)),
    }
}
