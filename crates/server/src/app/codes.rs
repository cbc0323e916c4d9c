//! One-time codes sent by email or SMS, and the second factors a customer can present.
//!
//! A code is never stored or queued in clear: the verification row holds its SHA-256, the
//! outbox event holds only the verification id, and the dispatcher recomputes the code from
//! the id and the master secret when it writes the message (`MasterSecret::one_time_code`).

use crate::secrets::{CodeForm, MasterSecret, new_id, random_bytes, token_hash};
use konbini_core::encoding::constant_time_eq;
use konbini_core::totp;
use konbini_store::customers::Customer;
use konbini_store::identity::{self, Verification};
use konbini_store::{Conn, StoreError};
use serde_json::json;

/// Where a code goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
}

/// The form of the code each purpose sends: link tokens for email links, digits otherwise.
pub fn form_of(purpose: &str) -> CodeForm {
    match purpose {
        "recovery_email" | "contact_revert" => CodeForm::Link,
        _ => CodeForm::Digits,
    }
}

/// A code to send: what it is for, the flow it belongs to, and how long it lives.
pub struct NewCode<'a> {
    pub customer_id: &'a str,
    pub flow: &'a [u8],
    pub purpose: &'a str,
    pub channel: Channel,
    /// An explicit destination (a contact point not yet verified, or the old one of a
    /// change); `None` sends to the account's verified contact point of that channel.
    pub to: Option<&'a str>,
    pub ttl_ms: i64,
}

/// Creates the verification and the outbox event that delivers its code, in the caller's
/// transaction.
pub fn send(
    c: &mut dyn Conn,
    secret: &MasterSecret,
    code: &NewCode<'_>,
    now_ms: i64,
) -> Result<(), StoreError> {
    let id = new_id("ver");
    let value = secret.one_time_code(&id, form_of(code.purpose));
    identity::insert_verification(
        c,
        &Verification {
            id: id.clone(),
            customer_id: code.customer_id.to_string(),
            flow: code.flow.to_vec(),
            purpose: code.purpose.to_string(),
            code_hash: token_hash(&value),
            attempts: 0,
            expires_ms: now_ms + code.ttl_ms,
            used_ms: None,
            created_ms: now_ms,
        },
    )?;
    let mut payload = json!({
        "customer_id": code.customer_id,
        "verification_id": id,
        "purpose": code.purpose,
        "channel": match code.channel { Channel::Email => "email", Channel::Sms => "sms" },
    });
    if let Some(to) = code.to {
        payload["to"] = json!(to);
    }
    super::emit(c, "verification.code", code.customer_id, &payload, now_ms)
}

/// Checks `code` against the newest live code of `purpose` in `flow` and spends it on a match.
/// A wrong answer counts against the code; a code that is used, expired or out of attempts
/// never matches. Runs inside a write that must commit either way (so failures are kept).
pub fn check(
    c: &mut dyn Conn,
    flow: &[u8],
    purpose: &str,
    code: &str,
    now_ms: i64,
    max_attempts: i64,
) -> Result<bool, StoreError> {
    let Some(v) = identity::latest_verification(c, flow, purpose)? else {
        return Ok(false);
    };
    let usable = v.used_ms.is_none() && now_ms < v.expires_ms && v.attempts < max_attempts;
    let matches = constant_time_eq(&v.code_hash, &token_hash(code.trim()));
    if usable && matches {
        return identity::use_verification(c, &v.id, now_ms);
    }
    identity::verification_failed(c, &v.id)?;
    Ok(false)
}

/// Whether `code` matches the newest live code of `purpose` in `flow`, without spending it
/// (a first proof shown to open a later step; the final step spends it).
pub fn matches(
    c: &mut dyn Conn,
    flow: &[u8],
    purpose: &str,
    code: &str,
    now_ms: i64,
    max_attempts: i64,
) -> Result<bool, StoreError> {
    Ok(
        identity::latest_verification(c, flow, purpose)?.is_some_and(|v| {
            v.used_ms.is_none()
                && now_ms < v.expires_ms
                && v.attempts < max_attempts
                && constant_time_eq(&v.code_hash, &token_hash(code.trim()))
        }),
    )
}

/// A second factor presented with a request.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Factor {
    /// `sms`, `totp`, `recovery_code`, or `passkey` (where a passkey ceremony was started).
    pub method: String,
    /// The code, for every method but `passkey`.
    #[serde(default)]
    pub code: String,
    /// The authenticator's answer (`PublicKeyCredential` JSON), for `passkey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<serde_json::Value>,
}

/// Refuses a `passkey` factor where no passkey ceremony exists (contact changes, removing a
/// factor): a clear error instead of a guess that can only fail.
pub fn require_code_factor(factor: &Factor) -> Result<(), crate::error::ApiError> {
    if matches!(factor.method.as_str(), "sms" | "totp" | "recovery_code") {
        return Ok(());
    }
    Err(crate::error::ApiError::invalid_param(
        "unsupported_factor",
        "factor",
        "Use an SMS code, a code from the authenticator app or a recovery code here.",
    ))
}

/// The proofs that show something other than the phone number: they lift the recovery hold's
/// limits and are required to recover an account that has one enrolled.
pub fn is_strong(method: &str) -> bool {
    matches!(method, "totp" | "recovery_code" | "passkey")
}

impl Factor {
    pub fn strong(&self) -> bool {
        is_strong(&self.method)
    }
}

/// Checks a TOTP code and records its step so it is never accepted twice.
pub fn check_totp(
    c: &mut dyn Conn,
    secret: &MasterSecret,
    customer: &Customer,
    code: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    if customer.totp_enabled_ms.is_none() {
        return Ok(false);
    }
    let key = secret.customer_totp_secret(&customer.id, customer.totp_generation);
    match totp::verify(&key, code.trim(), now_ms, customer.totp_last_step) {
        Some(step) => identity::use_totp_step(c, &customer.id, step),
        None => Ok(false),
    }
}

/// Checks and spends one of the customer's recovery codes.
pub fn check_recovery_code(
    c: &mut dyn Conn,
    customer_id: &str,
    code: &str,
    now_ms: i64,
) -> Result<bool, StoreError> {
    match konbini_core::recovery::canonical(code) {
        Some(canon) => identity::use_recovery_code(c, customer_id, &token_hash(&canon), now_ms),
        None => Ok(false),
    }
}

/// Checks a presented factor: an SMS code is looked up in the flow and purpose of `sms`.
pub fn check_factor(
    c: &mut dyn Conn,
    secret: &MasterSecret,
    customer: &Customer,
    factor: &Factor,
    sms: (&[u8], &str),
    now_ms: i64,
    max_attempts: i64,
) -> Result<bool, StoreError> {
    match factor.method.as_str() {
        "sms" => check(c, sms.0, sms.1, &factor.code, now_ms, max_attempts),
        "totp" => check_totp(c, secret, customer, &factor.code, now_ms),
        "recovery_code" => check_recovery_code(c, &customer.id, &factor.code, now_ms),
        _ => Ok(false),
    }
}

/// Ten fresh recovery codes: stored as hashes, returned once for the customer to keep.
pub fn issue_recovery_codes(
    c: &mut dyn Conn,
    customer_id: &str,
    now_ms: i64,
) -> Result<Vec<String>, StoreError> {
    let codes: Vec<String> = (0..konbini_core::recovery::COUNT)
        .map(|_| {
            konbini_core::recovery::format(&random_bytes::<{ konbini_core::recovery::BYTES }>())
        })
        .collect();
    let hashes: Vec<Vec<u8>> = codes
        .iter()
        .filter_map(|s| konbini_core::recovery::canonical(s))
        .map(|s| token_hash(&s))
        .collect();
    identity::replace_recovery_codes(c, customer_id, &hashes, now_ms)?;
    Ok(codes)
}

/// Why an attempt's transaction was rolled back.
enum Refusal {
    Refused,
    Store(StoreError),
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Store(e)
    }
}

/// Runs a proof-checking step as one transaction. When `attempt` refuses (`None`), all it did
/// is rolled back — a right code presented next to a wrong one is not spent, nothing is
/// half-applied — and then `on_failure` records the failure (attempt counters, throttles) in
/// a transaction of its own.
pub async fn attempt<T, A, F>(
    state: &crate::state::AppState,
    mut attempt: A,
    on_failure: F,
) -> Result<Option<T>, StoreError>
where
    T: Send + 'static,
    A: FnMut(&mut dyn Conn) -> Result<Option<T>, StoreError> + Send + 'static,
    F: FnMut(&mut dyn Conn) -> Result<(), StoreError> + Send + 'static,
{
    let r = state
        .db
        .write(move |c| match attempt(c)? {
            Some(v) => Ok(v),
            None => Err(Refusal::Refused),
        })
        .await;
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Refusal::Refused) => {
            state.db.write(on_failure).await?;
            Ok(None)
        }
        Err(Refusal::Store(e)) => Err(e),
    }
}

/// Wrong second factors presented by a signed-in customer (for a contact change or an MFA
/// change): at most `max_code_attempts` per `login_window_ms`, then `429`. A stolen session
/// cannot guess its way past the second factor.
pub fn factor_limits(
    cfg: &crate::config::Config,
    customer_id: &str,
) -> Vec<super::throttle::Limit> {
    vec![super::throttle::Limit::new(
        format!("factor:{customer_id}"),
        cfg.max_code_attempts,
        cfg.login_window_ms,
    )]
}

/// Records a wrong factor: against the customer's limit and, for an SMS code, against the
/// code itself (it dies after `max_code_attempts` wrong answers).
pub fn factor_failed(
    c: &mut dyn Conn,
    limits: &[super::throttle::Limit],
    factor: &Factor,
    sms: (&[u8], &str),
    now_ms: i64,
) -> Result<(), StoreError> {
    super::throttle::hit(c, limits, now_ms)?;
    if factor.method == "sms"
        && let Some(v) = identity::latest_verification(c, sms.0, sms.1)?
    {
        identity::verification_failed(c, &v.id)?;
    }
    Ok(())
}
