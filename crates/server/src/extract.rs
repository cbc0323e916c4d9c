//! Request extractors: JSON bodies with our error format, bearer credentials, idempotency keys.

use crate::error::ApiError;
use crate::secrets::token_hash;
use crate::state::AppState;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use konbini_store::{StoreError, customers, stores};
use serde::de::DeserializeOwned;

/// A JSON body. Unknown fields are refused by the request types themselves
/// (`#[serde(deny_unknown_fields)]`); every rejection becomes our error object, with any long
/// run of digits in the parser's message redacted so a mistyped card number is never echoed.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(json_error(rejection)),
        }
    }
}

fn json_error(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::invalid(
            "unsupported_content_type",
            "Send the body as JSON with Content-Type: application/json.",
        ),
        JsonRejection::JsonSyntaxError(_) => {
            ApiError::invalid("invalid_json", "The body is not valid JSON.")
        }
        JsonRejection::JsonDataError(e) => {
            ApiError::invalid("invalid_request", redact_digits(&e.body_text()))
        }
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            ..ApiError::invalid("body_too_large", "The request body is too large.")
        },
        _ => ApiError::invalid("invalid_request", "The request body could not be read."),
    }
}

/// Path parameters, refused with our error object when they cannot be decoded (such as
/// percent-encoded bytes that are not UTF-8) instead of axum's plain-text answer.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(_) => Err(ApiError::invalid(
                "invalid_path",
                "The URL path is not valid.",
            )),
        }
    }
}

/// Replaces every run of six or more digits with `[redacted]`.
pub fn redact_digits(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut run = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            run.push(c);
            continue;
        }
        flush(&mut out, &mut run);
        out.push(c);
    }
    flush(&mut out, &mut run);
    out
}

fn flush(out: &mut String, run: &mut String) {
    if run.len() >= 6 {
        out.push_str("[redacted]");
    } else {
        out.push_str(run);
    }
    run.clear();
}

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = v.strip_prefix("Bearer ")?;
    // Tokens are short ASCII; anything else is not ours and never reaches the database.
    (token.len() <= 128
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    .then_some(token)
}

/// An authenticated customer session.
#[derive(Debug, Clone)]
pub struct CustomerAuth {
    pub customer_id: String,
    pub device_id: String,
    pub token_hash: Vec<u8>,
    /// When the customer last proved who they are on this session.
    pub authenticated_ms: i64,
    /// The proof that bound this device (`totp` and `recovery_code` are strong).
    pub device_bound_by: String,
    /// After an account recovery, until when the recovery hold lasts.
    pub recovery_hold_until_ms: i64,
}

impl CustomerAuth {
    /// Sensitive actions need an authentication newer than `step_up_window_ms` (step-up):
    /// `POST /v1/sessions/current/reauthenticate` refreshes it.
    pub fn require_recent_auth(&self, state: &AppState) -> Result<(), ApiError> {
        if state.now_ms() - self.authenticated_ms <= state.config.step_up_window_ms {
            return Ok(());
        }
        Err(ApiError::forbidden(
            "reauthentication_required",
            "This action needs a recent sign-in: re-authenticate with your password (POST /v1/sessions/current/reauthenticate) and try again.",
        ))
    }

    /// Bound with an authenticator app, a passkey or a recovery code, not just an SMS code.
    pub fn strong_device(&self) -> bool {
        crate::app::codes::is_strong(&self.device_bound_by)
    }

    pub fn under_recovery_hold(&self, now_ms: i64) -> bool {
        now_ms < self.recovery_hold_until_ms
    }

    /// During the recovery hold, `what` needs a device bound with a strong factor.
    pub fn require_strong_during_hold(&self, state: &AppState, what: &str) -> Result<(), ApiError> {
        if !self.under_recovery_hold(state.now_ms()) || self.strong_device() {
            return Ok(());
        }
        Err(ApiError::forbidden(
            "recovery_hold",
            format!(
                "The account was recovered recently: until the recovery hold ends, {what} needs a device signed in with an authenticator app, a passkey or a recovery code."
            ),
        ))
    }
}

impl FromRequestParts<AppState> for CustomerAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts)
            .filter(|t| t.starts_with("ks_"))
            .ok_or_else(ApiError::unauthenticated)?;
        let hash = token_hash(token);
        let h = hash.clone();
        let session = state
            .db
            .read(move |c| customers::session(c, &h))
            .await?
            .ok_or_else(ApiError::unauthenticated)?;
        let now = state.now_ms();
        let idle = state.config.session_idle_ms;
        if session.revoked
            || now >= session.expires_ms
            || now >= session.last_seen_ms + idle
            || session.device_status != "bound"
        {
            return Err(ApiError::unauthenticated());
        }
        if session.customer_status != "active" {
            return Err(ApiError::forbidden(
                "account_frozen",
                "This account is frozen; contact support.",
            ));
        }
        // Record activity for the idle timeout at most once a minute per session.
        if now - session.last_seen_ms > 60_000 {
            let h = hash.clone();
            state
                .db
                .write(move |c| customers::touch_session(c, &h, now, 60_000))
                .await?;
        }
        Ok(CustomerAuth {
            customer_id: session.customer_id,
            device_id: session.device_id,
            token_hash: hash,
            authenticated_ms: session.authenticated_ms,
            device_bound_by: session.device_bound_by,
            recovery_hold_until_ms: session.recovery_hold_until_ms,
        })
    }
}

/// An authenticated POS terminal.
#[derive(Debug, Clone)]
pub struct TerminalAuth {
    pub terminal_id: String,
    pub store_id: String,
}

impl FromRequestParts<AppState> for TerminalAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = bearer(parts)
            .filter(|t| t.starts_with("kt_"))
            .ok_or_else(ApiError::unauthenticated)?;
        let hash = token_hash(key);
        let terminal = state
            .db
            .read(move |c| stores::terminal_by_key_hash(c, &hash))
            .await?
            .ok_or_else(ApiError::unauthenticated)?;
        Ok(TerminalAuth {
            terminal_id: terminal.id,
            store_id: terminal.store_id,
        })
    }
}

/// A terminal key that is well-formed but not yet looked up: the payment hot path resolves
/// it inside its own transaction (`stores::pos_context`) instead of spending a separate read.
#[derive(Debug, Clone)]
pub struct TerminalKey {
    pub key_hash: Vec<u8>,
}

impl<S: Send + Sync> FromRequestParts<S> for TerminalKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let key = bearer(parts)
            .filter(|t| t.starts_with("kt_"))
            .ok_or_else(ApiError::unauthenticated)?;
        Ok(TerminalKey {
            key_hash: token_hash(key),
        })
    }
}

/// The `Idempotency-Key` header, required on every request that moves money.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let v = parts.headers.get("idempotency-key").ok_or_else(|| {
            ApiError::invalid(
                "idempotency_key_missing",
                "This request needs an Idempotency-Key header.",
            )
        })?;
        let s = v.to_str().map_err(|_| {
            ApiError::invalid(
                "idempotency_key_invalid",
                "The Idempotency-Key must be printable ASCII.",
            )
        })?;
        if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(ApiError::invalid(
                "idempotency_key_invalid",
                "The Idempotency-Key must be 1 to 255 printable ASCII characters.",
            ));
        }
        Ok(IdempotencyKey(s.to_string()))
    }
}

impl From<StoreError> for Box<ApiError> {
    fn from(e: StoreError) -> Self {
        Box::new(ApiError::from(e))
    }
}
