//! Contact changes (email or phone): a recent authentication plus a second factor, a code to
//! the new address, and a message to the old one with a link that reverts the change and
//! freezes the account (valid 7 days).

use super::accounts::{handle_hash, normalize_email, normalize_phone, not_throttled};
use super::codes::{self, Channel, Factor, NewCode};
use super::throttle;
use crate::error::{ApiError, ApiResult};
use crate::extract::CustomerAuth;
use crate::secrets::{new_token, token_hash};
use crate::state::AppState;
use konbini_store::identity::{self, Flow};
use konbini_store::{StoreError, customers};
use serde_json::{Value, json};
use std::net::IpAddr;

fn invalid_factor() -> ApiError {
    ApiError::invalid(
        "invalid_code",
        "The second factor is wrong, used or expired.",
    )
    .with_param("factor")
}

/// Starts a change of the account's `kind` (`email` or `phone`) to `value`: sends a code to
/// the new address. Needs a recent authentication and a second factor (during the recovery
/// hold, a strong one: TOTP or a recovery code).
pub async fn begin(
    state: &AppState,
    auth: &CustomerAuth,
    kind: &str,
    value: &str,
    factor: Factor,
) -> ApiResult<Value> {
    auth.require_recent_auth(state)?;
    codes::require_code_factor(&factor)?;
    let value = match kind {
        "email" => normalize_email(value).map_err(|e| e.with_param("value"))?,
        "phone" => normalize_phone(value).map_err(|e| e.with_param("value"))?,
        _ => {
            return Err(ApiError::invalid_param(
                "invalid_kind",
                "kind",
                "kind is email or phone.",
            ));
        }
    };
    let now = state.now_ms();
    if auth.under_recovery_hold(now) && !factor.strong() {
        return Err(ApiError::forbidden(
            "recovery_hold",
            "The account was recovered recently: until the recovery hold ends, a contact change needs a code from the authenticator app or a recovery code.",
        ));
    }
    let cfg = state.config.clone();
    let limits = codes::factor_limits(&cfg, &auth.customer_id);
    not_throttled(state, &limits).await?;
    let cid = auth.customer_id.clone();
    let cu = state
        .db
        .read(move |c| customers::by_id(c, &cid))
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let old = if kind == "email" {
        &cu.email
    } else {
        &cu.phone
    }
    .clone();
    if old == value {
        // Refused before the factor is looked at, so no code is spent on it.
        return Err(ApiError::invalid_param(
            "contact_unchanged",
            "value",
            "That is already the account's address.",
        ));
    }
    let secret = state.secret.clone();
    let st = state.clone();
    let (cid, session) = (auth.customer_id.clone(), auth.token_hash.clone());
    let kind = kind.to_string();
    let handle = new_token("kcc");
    let hh = token_hash(&handle);
    let (failed_factor, failed_session) = (factor.clone(), session.clone());
    let out = codes::attempt(
        state,
        move |c| {
            if !codes::check_factor(
                c,
                &secret,
                &cu,
                &factor,
                (&session, "step_up_sms"),
                now,
                cfg.max_code_attempts,
            )? {
                return Ok(None);
            }
            // The risk engine sees every contact change: a block refuses it, a step-up asks
            // for a strong factor (an authenticator app or a recovery code).
            let Some(cu) = customers::by_id(c, &cid)? else {
                return Ok(None);
            };
            let decision = super::risk::decide_identity(
                c,
                &st,
                konbini_core::risk::EventKind::ContactChange,
                &cu,
                None,
                None,
                now,
            )?;
            match decision.outcome {
                konbini_core::risk::Outcome::Block => {
                    return Ok(Some(Err(super::risk::refused("contact change"))));
                }
                konbini_core::risk::Outcome::StepUp if !factor.strong() => {
                    return Ok(Some(Err(ApiError::forbidden(
                        "stronger_factor_required",
                        "This change needs a code from the authenticator app or a recovery code.",
                    ))));
                }
                _ => {}
            }
            identity::insert_flow(
                c,
                &Flow {
                    handle_hash: hh.clone(),
                    kind: "contact_change".into(),
                    customer_id: cid.clone(),
                    data: json!({"kind": kind, "new": value, "old": old}).to_string(),
                    attempts: 0,
                    expires_ms: now + cfg.code_ttl_ms,
                    done_ms: None,
                    created_ms: now,
                },
            )?;
            let channel = if kind == "email" {
                Channel::Email
            } else {
                Channel::Sms
            };
            let code = NewCode {
                customer_id: &cid,
                flow: &hh,
                purpose: "contact_new",
                channel,
                to: Some(&value),
                ttl_ms: cfg.code_ttl_ms,
            };
            codes::send(c, &secret, &code, now)?;
            Ok(Some(Ok(())))
        },
        move |c| {
            codes::factor_failed(
                c,
                &limits,
                &failed_factor,
                (&failed_session, "step_up_sms"),
                now,
            )
        },
    )
    .await?;
    state.wake_dispatcher();
    match out {
        None => Err(invalid_factor()),
        Some(Err(e)) => Err(e),
        Some(Ok(())) => Ok(json!({
            "change_id": handle,
            "status": "pending_verification",
            "expires_at_ms": now + state.config.code_ttl_ms,
            "message": "We sent a code to the new address; send it to /v1/contact-changes/verify.",
        })),
    }
}

/// Applies a change with the code the new address received; the old address gets the link
/// that reverts it.
pub async fn verify(
    state: &AppState,
    auth: &CustomerAuth,
    change_id: &str,
    code: &str,
) -> ApiResult<Value> {
    let bad = || {
        ApiError::invalid("invalid_code", "The code is wrong, used or expired.").with_param("code")
    };
    let hh = handle_hash(change_id, "kcc").ok_or_else(bad)?;
    let cfg = state.config.clone();
    let secret = state.secret.clone();
    let now = state.now_ms();
    let cid = auth.customer_id.clone();
    let code = code.to_string();
    let h2 = hh.clone();
    let out = codes::attempt(
        state,
        move |c| {
            let Some(flow) = identity::flow_by_handle(c, &hh, "contact_change")? else {
                return Ok(None);
            };
            if flow.customer_id != cid
                || !flow.live(now, cfg.max_code_attempts)
                || !codes::check(c, &hh, "contact_new", &code, now, cfg.max_code_attempts)?
                || !identity::finish_flow(c, &hh, now)?
            {
                return Ok(None);
            }
            let data: Value = serde_json::from_str(&flow.data).unwrap_or(Value::Null);
            let (kind, new, old) = (
                data["kind"].as_str().unwrap_or(""),
                data["new"].as_str().unwrap_or(""),
                data["old"].as_str().unwrap_or(""),
            );
            if !identity::set_contact(c, &cid, kind, new, now)? {
                return Ok(Some(Err(ApiError::conflict(
                    "contact_unavailable",
                    "This address cannot be used for this account.",
                ))));
            }
            // The old address keeps a way back for 7 days: undo the change and freeze.
            let channel = if kind == "email" {
                Channel::Email
            } else {
                Channel::Sms
            };
            let revert = NewCode {
                customer_id: &cid,
                flow: &hh,
                purpose: "contact_revert",
                channel,
                to: Some(old),
                ttl_ms: cfg.contact_revert_ttl_ms,
            };
            codes::send(c, &secret, &revert, now)?;
            konbini_store::audit::append(
                c,
                &cid,
                "contact.changed",
                &cid,
                &json!({"customer_id": cid, "kind": kind}).to_string(),
                now,
            )?;
            Ok(Some(Ok(kind.to_string())))
        },
        move |c| identity::flow_failed(c, &h2),
    )
    .await?;
    state.wake_dispatcher();
    match out {
        None => Err(bad()),
        Some(Err(e)) => Err(e),
        Some(Ok(kind)) => Ok(json!({"status": "changed", "kind": kind})),
    }
}

/// Reverts a contact change with the token sent to the old address: the old address comes
/// back, the account is frozen, every session and device ends. No sign-in needed — the old
/// owner may have lost the account.
pub async fn revert(state: &AppState, token: &str, ip: IpAddr) -> ApiResult<Value> {
    let cfg = state.config.clone();
    let limits = throttle::per_client(
        "code",
        ip,
        cfg.login_failures_per_ip,
        cfg.login_failures_per_network,
        cfg.login_window_ms,
    );
    not_throttled(state, &limits).await?;
    let now = state.now_ms();
    let code_hash = token_hash(token.trim());
    let out = codes::attempt(
        state,
        move |c| {
            let Some(v) = identity::verification_by_code(c, "contact_revert", &code_hash)? else {
                return Ok(None);
            };
            if v.used_ms.is_some()
                || now >= v.expires_ms
                || !identity::use_verification(c, &v.id, now)?
            {
                return Ok(None);
            }
            let Some(flow) = identity::flow_by_handle(c, &v.flow, "contact_change")? else {
                return Ok(None);
            };
            let data: Value = serde_json::from_str(&flow.data).unwrap_or(Value::Null);
            let (kind, old) = (
                data["kind"].as_str().unwrap_or(""),
                data["old"].as_str().unwrap_or(""),
            );
            // The old address may have been taken by another account since: the account is
            // frozen either way, and the audit record says whether it came back.
            let restored = identity::set_contact(c, &flow.customer_id, kind, old, now)?;
            identity::set_status(c, &flow.customer_id, "frozen")?;
            customers::revoke_everything(c, &flow.customer_id, now)?;
            super::security_event(
                c,
                "anonymous",
                "contact.change_reverted",
                &flow.customer_id,
                &json!({"customer_id": flow.customer_id, "kind": kind, "restored": restored}),
                now,
            )?;
            Ok::<_, StoreError>(Some(()))
        },
        move |c| throttle::hit(c, &limits, now),
    )
    .await?;
    state.wake_dispatcher();
    out.ok_or_else(|| ApiError::invalid("invalid_token", "The link is wrong, used or expired."))?;
    Ok(json!({
        "status": "reverted",
        "message": "The change was undone and the account is frozen; every device was signed out. Contact support to reopen it.",
    }))
}
