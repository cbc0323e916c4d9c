//! Idempotency inside a use case's transaction (Stripe semantics): the first response for a
//! key is stored with the work it describes and replayed for every retry with the same key.

use crate::error::{ApiError, ApiResult};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use konbini_store::{Conn, idempotency};
use sha2::{Digest, Sha256};

/// A claimed key: who sent it, the key, and the hash of the request it protects.
#[derive(Debug, Clone)]
pub struct Idem {
    pub scope: String,
    pub key: String,
    pub request_hash: Vec<u8>,
}

impl Idem {
    /// `request` is the parsed request (re-serialized, so formatting does not matter) plus
    /// the route it was sent to.
    pub fn new(scope: &str, key: &str, route: &str, request: &impl serde::Serialize) -> Idem {
        let mut h = Sha256::new();
        h.update(route.as_bytes());
        h.update([0]);
        h.update(serde_json::to_vec(request).unwrap_or_default());
        Idem {
            scope: scope.to_string(),
            key: key.to_string(),
            request_hash: h.finalize().to_vec(),
        }
    }
}

/// A response as stored for replay.
#[derive(Debug, Clone)]
pub struct Stored {
    pub status: u16,
    pub body: String,
}

impl Stored {
    pub fn json(status: StatusCode, body: &serde_json::Value) -> Stored {
        Stored {
            status: status.as_u16(),
            body: body.to_string(),
        }
    }
}

impl IntoResponse for Stored {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            self.body,
        )
            .into_response()
    }
}

/// Claims the key. `Ok(Some(stored))`: replay it; `Ok(None)`: first use, go ahead.
pub fn begin(c: &mut dyn Conn, idem: &Idem, now_ms: i64) -> ApiResult<Option<Stored>> {
    match idempotency::claim(c, &idem.scope, &idem.key, &idem.request_hash, now_ms)? {
        idempotency::Claim::New => Ok(None),
        idempotency::Claim::Replay { status, body } => Ok(Some(Stored { status, body })),
        idempotency::Claim::Mismatch => Err(ApiError::idempotency(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "This Idempotency-Key was used with different request parameters.",
        )),
        idempotency::Claim::InFlight => Err(ApiError::idempotency(
            StatusCode::CONFLICT,
            "idempotency_key_in_use",
            "A request with this Idempotency-Key is still being processed; retry later.",
        )),
    }
}

/// Marker code of the error a use case returns when, at the end of its work, another request
/// with the same key turned out to have committed first ([`record_at_end`] returned false).
/// The work is rolled back and the caller answers from the stored response (see `pos::create_payment`).
pub const RACE: &str = "idempotency_race";

/// The answer for a key that already has a row: replay, mismatch (422) or in flight (409).
pub fn answer_existing(existing: idempotency::Existing, request_hash: &[u8]) -> ApiResult<Stored> {
    match idempotency::judge(Some(existing), request_hash) {
        idempotency::Claim::Replay { status, body } => Ok(Stored { status, body }),
        idempotency::Claim::Mismatch => Err(ApiError::idempotency(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "This Idempotency-Key was used with different request parameters.",
        )),
        _ => Err(ApiError::idempotency(
            StatusCode::CONFLICT,
            "idempotency_key_in_use",
            "A request with this Idempotency-Key is still being processed; retry later.",
        )),
    }
}

/// Records the key with its response at the end of the work (one statement, no claim up
/// front). `response` is `None` when the work continues in a second transaction.
pub fn record_at_end(
    c: &mut dyn Conn,
    idem: &Idem,
    response: Option<&Stored>,
    now_ms: i64,
) -> ApiResult<()> {
    let inserted = idempotency::insert(
        c,
        &idem.scope,
        &idem.key,
        &idem.request_hash,
        response.map(|s| (s.status, s.body.as_str())),
        now_ms,
    )?;
    if inserted {
        Ok(())
    } else {
        Err(ApiError::idempotency(
            StatusCode::CONFLICT,
            RACE,
            "A concurrent request used this Idempotency-Key.",
        ))
    }
}

/// Stores the response for replay, in the same transaction as the work.
pub fn finish(c: &mut dyn Conn, idem: &Idem, stored: &Stored) -> ApiResult<()> {
    idempotency::complete(c, &idem.scope, &idem.key, stored.status, &stored.body)?;
    Ok(())
}
