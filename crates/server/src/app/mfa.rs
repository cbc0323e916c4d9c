//! Second factors the customer manages: TOTP (an authenticator app), recovery codes, step-up
//! SMS codes, and the password change. Every change here needs a recent authentication and
//! is a security event (a message to the customer and an audit record).

use super::codes::{self, Channel, Factor, NewCode};
use crate::error::{ApiError, ApiResult};
use crate::extract::CustomerAuth;
use crate::state::AppState;
use konbini_core::totp;
use konbini_store::identity;
use konbini_store::{StoreError, customers};
use serde_json::{Value, json};

async fn customer(state: &AppState, id: &str) -> ApiResult<customers::Customer> {
    let id = id.to_string();
    state
        .db
        .read(move |c| customers::by_id(c, &id))
        .await?
        .ok_or_else(ApiError::unauthenticated)
}

/// What protects the account: which factors are enrolled and how many recovery codes remain.
pub async fn status(state: &AppState, auth: &CustomerAuth) -> ApiResult<Value> {
    let cust = customer(state, &auth.customer_id).await?;
    let id = auth.customer_id.clone();
    let (left, passkeys) = state
        .db
        .read(move |c| {
            Ok::<_, StoreError>((
                identity::recovery_codes_left(c, &id)?,
                identity::passkeys_of(c, &id)?.len(),
            ))
        })
        .await?;
    let now = state.now_ms();
    Ok(json!({
        "sms": {"enabled": cust.phone_verified_ms.is_some()},
        "totp": {"enabled": cust.totp_enabled_ms.is_some()},
        "recovery_codes": {"remaining": left},
        "passkeys": {"count": passkeys},
        "recovery_hold": {
            "active": now < cust.recovery_hold_until_ms,
            "until_ms": (now < cust.recovery_hold_until_ms).then_some(cust.recovery_hold_until_ms),
        },
    }))
}

/// Starts enrolling an authenticator app: the secret (base32) and `otpauth://` URI to scan.
/// Nothing changes until `confirm_totp` proves the app shows the right codes.
pub async fn begin_totp(state: &AppState, auth: &CustomerAuth) -> ApiResult<Value> {
    auth.require_recent_auth(state)?;
    // A factor added from a weakly bound device during the hold would lift the hold.
    auth.require_strong_during_hold(state, "adding a second factor")?;
    let cust = customer(state, &auth.customer_id).await?;
    if cust.totp_enabled_ms.is_some() {
        return Err(ApiError::conflict(
            "totp_already_enabled",
            "An authenticator app is already enrolled; remove it first.",
        ));
    }
    let id = auth.customer_id.clone();
    let generation = state
        .db
        .write(move |c| identity::begin_totp(c, &id))
        .await?;
    let secret = state.secret.customer_totp_secret(&cust.id, generation);
    Ok(json!({
        "secret": konbini_core::encoding::base32(&secret),
        "otpauth_uri": totp::provisioning_uri(&secret, &cust.email, "Konbini"),
    }))
}

/// Confirms the enrolment with a code from the app; returns ten recovery codes, once.
pub async fn confirm_totp(state: &AppState, auth: &CustomerAuth, code: &str) -> ApiResult<Value> {
    auth.require_recent_auth(state)?;
    auth.require_strong_during_hold(state, "adding a second factor")?;
    let now = state.now_ms();
    let secret = state.secret.clone();
    let (id, code) = (auth.customer_id.clone(), code.to_string());
    let out = state
        .db
        .write(move |c| {
            let Some(mut cust) = customers::by_id(c, &id)? else {
                return Ok(None);
            };
            if cust.totp_enabled_ms.is_some() || cust.totp_generation == 0 {
                return Ok(None);
            }
            // Check against the pending generation as if it were enabled.
            cust.totp_enabled_ms = Some(now);
            if !codes::check_totp(c, &secret, &cust, &code, now)? {
                return Ok(None);
            }
            identity::enable_totp(c, &id, true, now)?;
            let recovery = codes::issue_recovery_codes(c, &id, now)?;
            super::security_event(
                c,
                &id,
                "mfa.totp_enabled",
                &id,
                &json!({"customer_id": id}),
                now,
            )?;
            Ok::<_, StoreError>(Some(recovery))
        })
        .await?;
    state.wake_dispatcher();
    match out {
        Some(recovery) => Ok(json!({"totp": {"enabled": true}, "recovery_codes": recovery})),
        None => Err(ApiError::invalid(
            "invalid_code",
            "The code does not match the authenticator app (or no enrolment is pending).",
        )
        .with_param("code")),
    }
}

/// Removes the authenticator app: needs a recent authentication and a current TOTP or
/// recovery code.
pub async fn disable_totp(
    state: &AppState,
    auth: &CustomerAuth,
    factor: Factor,
) -> ApiResult<Value> {
    auth.require_recent_auth(state)?;
    super::codes::require_code_factor(&factor)?;
    let now = state.now_ms();
    let secret = state.secret.clone();
    let max = state.config.max_code_attempts;
    let limits = codes::factor_limits(&state.config, &auth.customer_id);
    super::accounts::not_throttled(state, &limits).await?;
    let id = auth.customer_id.clone();
    let ok = state
        .db
        .write(move |c| {
            let Some(cust) = customers::by_id(c, &id)? else {
                return Ok(false);
            };
            if cust.totp_enabled_ms.is_none()
                || !factor.strong()
                || !codes::check_factor(c, &secret, &cust, &factor, (&[], ""), now, max)?
            {
                super::throttle::hit(c, &limits, now)?;
                return Ok(false);
            }
            identity::enable_totp(c, &id, false, now)?;
            super::security_event(
                c,
                &id,
                "mfa.totp_disabled",
                &id,
                &json!({"customer_id": id}),
                now,
            )?;
            Ok::<_, StoreError>(true)
        })
        .await?;
    state.wake_dispatcher();
    if !ok {
        return Err(ApiError::invalid(
            "invalid_code",
            "Give a current code from the authenticator app, or a recovery code.",
        )
        .with_param("factor"));
    }
    Ok(json!({"totp": {"enabled": false}}))
}

/// Replaces the recovery codes with ten new ones (the old ones stop working).
pub async fn new_recovery_codes(state: &AppState, auth: &CustomerAuth) -> ApiResult<Value> {
    auth.require_recent_auth(state)?;
    // Recovery codes are a strong factor: minting them from a held, weakly bound device would
    // lift the hold.
    auth.require_strong_during_hold(state, "making recovery codes")?;
    let now = state.now_ms();
    let id = auth.customer_id.clone();
    let codes = state
        .db
        .write(move |c| {
            let codes = codes::issue_recovery_codes(c, &id, now)?;
            super::security_event(
                c,
                &id,
                "mfa.recovery_codes_regenerated",
                &id,
                &json!({"customer_id": id}),
                now,
            )?;
            Ok::<_, StoreError>(codes)
        })
        .await?;
    state.wake_dispatcher();
    Ok(json!({"recovery_codes": codes}))
}

/// Sends a step-up code to the verified phone, for an action that asks for a second factor
/// (a contact change). Bound to this session; at most `max_code_sends` per 10 minutes.
pub async fn send_step_up_sms(state: &AppState, auth: &CustomerAuth) -> ApiResult<Value> {
    let now = state.now_ms();
    let cfg = state.config.clone();
    let ttl = cfg.code_ttl_ms;
    let secret = state.secret.clone();
    let (id, flow) = (auth.customer_id.clone(), auth.token_hash.clone());
    // At most `max_code_sends` step-up codes per code lifetime for one customer.
    let limits = vec![super::throttle::Limit::new(
        format!("step-up-sms:{id}"),
        cfg.max_code_sends,
        cfg.code_ttl_ms,
    )];
    let sent = state
        .db
        .write(move |c| {
            if super::throttle::exhausted(c, &limits, now)?.is_some() {
                return Ok(false);
            }
            super::throttle::hit(c, &limits, now)?;
            let code = NewCode {
                customer_id: &id,
                flow: &flow,
                purpose: "step_up_sms",
                channel: Channel::Sms,
                to: None,
                ttl_ms: cfg.code_ttl_ms,
            };
            codes::send(c, &secret, &code, now)?;
            Ok::<_, StoreError>(true)
        })
        .await?;
    if !sent {
        return Err(super::throttle::too_many(ttl));
    }
    state.wake_dispatcher();
    Ok(json!({"status": "sent", "expires_at_ms": now + state.config.code_ttl_ms}))
}

/// Changes the password (recent authentication and the current password): other sessions end.
pub async fn change_password(
    state: &AppState,
    auth: &CustomerAuth,
    current: &str,
    new: &str,
    client_ip: std::net::IpAddr,
) -> ApiResult<Value> {
    auth.require_recent_auth(state)?;
    let cust = super::accounts::confirm_password(state, &auth.customer_id, current, client_ip)
        .await
        .map_err(|e| e.with_param("current_password"))?;
    super::accounts::check_password(new, Some(&cust.email))
        .map_err(|e| e.with_param("new_password"))?;
    let hash = super::accounts::hash_password_async(new).await?;
    let now = state.now_ms();
    let (id, keep) = (auth.customer_id.clone(), auth.token_hash.clone());
    state
        .db
        .write(move |c| {
            identity::set_password(c, &id, &hash, now)?;
            identity::revoke_other_sessions(c, &id, &keep, now)?;
            super::security_event(
                c,
                &id,
                "password.changed",
                &id,
                &json!({"customer_id": id}),
                now,
            )?;
            Ok::<_, StoreError>(())
        })
        .await?;
    state.wake_dispatcher();
    Ok(json!({"status": "changed"}))
}
