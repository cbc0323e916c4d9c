//! Account recovery ("forgot password"), closed against the 7pay attack.
//!
//! - The request names an account identifier and nothing else (the request type refuses any
//!   other field), and the messages go only to the contact points already verified on the
//!   account: the request has no way to name a destination.
//! - The answer is the same — status, body and timing — whether or not the account exists:
//!   a random recovery id is returned at once, and the account lookup and the messages
//!   happen after the answer.
//! - Completing needs two independent proofs: the email token AND the SMS code, or one of
//!   them plus a TOTP or recovery code. An account with an authenticator app always needs
//!   the app or a recovery code, so recovery never bypasses an enrolled factor.
//! - A recovery logs no one in: it ends every session and device binding, tells every
//!   contact point, and starts the recovery hold.

use super::accounts::{
    check_password, handle_hash, hash_password_async, normalize_email, normalize_phone,
    not_throttled,
};
use super::codes::{self, Channel, NewCode};
use super::throttle;
use crate::error::{ApiError, ApiResult};
use crate::secrets::{MasterSecret, new_token, token_hash};
use crate::state::AppState;
use konbini_store::identity::{self, Flow};
use konbini_store::{Conn, StoreError, customers};
use serde_json::{Value, json};
use std::net::IpAddr;

/// An account identifier as typed: an email address or a phone number.
enum Identifier {
    Email(String),
    Phone(String),
}

fn parse_identifier(s: &str) -> ApiResult<Identifier> {
    let bad = |_| {
        ApiError::invalid_param(
            "invalid_identifier",
            "identifier",
            "Enter the email address or the phone number of the account.",
        )
    };
    if s.contains('@') {
        normalize_email(s).map(Identifier::Email).map_err(bad)
    } else {
        normalize_phone(s).map(Identifier::Phone).map_err(bad)
    }
}

/// Starts a recovery. Always answers the same; see the module comment.
pub async fn request(state: &AppState, identifier: &str, ip: IpAddr) -> ApiResult<Value> {
    let ident = parse_identifier(identifier)?;
    let cfg = state.config.clone();
    let now = state.now_ms();
    let limits = throttle::per_client(
        "recovery",
        ip,
        cfg.recoveries_per_ip,
        cfg.recoveries_per_network,
        cfg.request_window_ms,
    );
    state
        .db
        .write(move |c| throttle::take(c, &limits, now))
        .await??;
    let handle = new_token("krc");
    let handle_hash = token_hash(&handle);
    let st = state.clone();
    tokio::spawn(async move {
        let secret = st.secret.clone();
        let cfg = st.config.clone();
        let r = st
            .db
            .write(move |c| start(c, &secret, &cfg, &ident, &handle_hash, now))
            .await;
        match r {
            Ok(()) => st.wake_dispatcher(),
            Err(e) => tracing::error!(error = %e, "starting a recovery failed"),
        }
    });
    Ok(json!({
        "status": "accepted",
        "recovery_id": handle,
        "expires_at_ms": now + state.config.recovery_ttl_ms,
        "message": "If an account matches, a recovery link was sent to its verified email address and a code to its verified phone. Both expire in 15 minutes.",
    }))
}

/// The account-dependent part of a recovery request (after the answer).
fn start(
    c: &mut dyn Conn,
    secret: &MasterSecret,
    cfg: &crate::config::Config,
    ident: &Identifier,
    handle_hash: &[u8],
    now: i64,
) -> Result<(), StoreError> {
    let customer = match ident {
        Identifier::Email(e) => customers::by_email(c, e)?,
        Identifier::Phone(p) => customers::by_verified_phone(c, p)?,
    };
    let Some(customer) = customer else {
        return Ok(());
    };
    let (email_ok, phone_ok) = (
        customer.email_verified_ms.is_some(),
        customer.phone_verified_ms.is_some(),
    );
    if !(email_ok || phone_ok)
        || identity::flows_since(c, &customer.id, "recovery", now - 3_600_000)?
            >= cfg.recoveries_per_account_per_hour
    {
        return Ok(());
    }
    identity::insert_flow(
        c,
        &Flow {
            handle_hash: handle_hash.to_vec(),
            kind: "recovery".into(),
            customer_id: customer.id.clone(),
            data: "{}".into(),
            attempts: 0,
            expires_ms: now + cfg.recovery_ttl_ms,
            done_ms: None,
            created_ms: now,
        },
    )?;
    // `to: None`: each message goes to the account's own verified contact point.
    let code = |purpose, channel| NewCode {
        customer_id: &customer.id,
        flow: handle_hash,
        purpose,
        channel,
        to: None,
        ttl_ms: cfg.recovery_ttl_ms,
    };
    if email_ok {
        codes::send(c, secret, &code("recovery_email", Channel::Email), now)?;
    }
    if phone_ok {
        codes::send(c, secret, &code("recovery_sms", Channel::Sms), now)?;
    }
    konbini_store::audit::append(
        c,
        "anonymous",
        "recovery.requested",
        &customer.id,
        &json!({"customer_id": customer.id}).to_string(),
        now,
    )?;
    Ok(())
}

/// Starts the passkey step of a recovery. Only after a first proof (the email token or the
/// SMS code) checks out, so that the answer — which lists the account's passkeys — never
/// tells an account apart from a made-up recovery id.
pub async fn begin_passkey(
    state: &AppState,
    recovery_id: &str,
    email_token: Option<&str>,
    sms_code: Option<&str>,
    ip: IpAddr,
) -> ApiResult<Value> {
    let hh = handle_hash(recovery_id, "krc").ok_or_else(refused)?;
    let cfg = state.config.clone();
    let now = state.now_ms();
    let limits = throttle::per_client(
        "code",
        ip,
        cfg.login_failures_per_ip,
        cfg.login_failures_per_network,
        cfg.login_window_ms,
    );
    not_throttled(state, &limits).await?;
    let (e, s) = (
        email_token.map(str::to_string),
        sms_code.map(str::to_string),
    );
    let flow = state
        .db
        .write(move |c| {
            let flow = identity::flow_by_handle(c, &hh, "recovery")?
                .filter(|f| f.live(now, cfg.max_code_attempts));
            let max = cfg.max_code_attempts;
            let shown = match (&flow, &e, &s) {
                (Some(_), Some(t), None) => codes::matches(c, &hh, "recovery_email", t, now, max)?,
                (Some(_), None, Some(t)) => codes::matches(c, &hh, "recovery_sms", t, now, max)?,
                _ => false,
            };
            if !shown {
                identity::flow_failed(c, &hh)?;
                throttle::hit(c, &limits, now)?;
                return Ok::<_, StoreError>(None);
            }
            Ok(flow)
        })
        .await?
        .ok_or_else(refused)?;
    super::passkeys::begin_assertion(state, &flow).await
}

/// The proofs presented to complete a recovery (at least two).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proofs {
    pub email_token: Option<String>,
    pub sms_code: Option<String>,
    pub totp_code: Option<String>,
    pub recovery_code: Option<String>,
    /// A passkey's answer to the ceremony started with `POST /v1/recovery/passkey`.
    pub passkey: Option<Value>,
}

fn refused() -> ApiError {
    ApiError::invalid(
        "invalid_proof",
        "The recovery could not be completed: a token or code is wrong, used or expired, or two independent proofs were not given.",
    )
}

/// Completes a recovery: checks the proofs, sets the new password, ends every session and
/// device binding, starts the recovery hold and tells every contact point. Logs no one in.
///
/// Without a `recovery_id` (the page the email link opens has only the token), the email
/// token itself names the recovery.
pub async fn complete(
    state: &AppState,
    recovery_id: Option<&str>,
    proofs: Proofs,
    new_password: &str,
    ip: IpAddr,
) -> ApiResult<Value> {
    let hh = match (recovery_id, &proofs.email_token) {
        (Some(id), _) => handle_hash(id, "krc").ok_or_else(refused)?,
        (None, Some(token)) => {
            let code_hash = token_hash(token.trim());
            state
                .db
                .read(move |c| identity::verification_by_code(c, "recovery_email", &code_hash))
                .await?
                .map(|v| v.flow)
                // An unknown token goes on like a made-up recovery id: refused below, alike.
                .unwrap_or_else(|| token_hash("no such recovery"))
        }
        (None, None) => return Err(refused()),
    };
    let cfg = state.config.clone();
    let now = state.now_ms();
    let limits = throttle::per_client(
        "code",
        ip,
        cfg.login_failures_per_ip,
        cfg.login_failures_per_network,
        cfg.login_window_ms,
    );
    not_throttled(state, &limits).await?;
    let h = hh.clone();
    let found = state
        .db
        .read(move |c| {
            let Some(flow) = identity::flow_by_handle(c, &h, "recovery")? else {
                return Ok::<_, StoreError>(None);
            };
            Ok(customers::by_id(c, &flow.customer_id)?.map(|cu| (flow, cu)))
        })
        .await?;
    // The new password is checked, and hashed, the same way whether or not the recovery id
    // is real (without the email-context rule, which needs the account): a weak password
    // must not answer differently for a real recovery than for a made-up one.
    check_password(new_password, None).map_err(|e| e.with_param("new_password"))?;
    let password_hash = Some(hash_password_async(new_password).await?);
    let secret = state.secret.clone();
    let webauthn = state.webauthn.clone();
    let st = state.clone();
    let h2 = hh.clone();
    let out = codes::attempt(
        state,
        move |c| {
            let (Some((flow, cu)), Some(hash)) = (&found, &password_hash) else {
                return Ok(None);
            };
            if !flow.live(now, cfg.max_code_attempts) || !identity::finish_flow(c, &hh, now)? {
                return Ok(None);
            }
            let max = cfg.max_code_attempts;
            let mut results = Vec::new();
            if let Some(t) = &proofs.email_token {
                results.push((
                    "email",
                    codes::check(c, &hh, "recovery_email", t, now, max)?,
                ));
            }
            if let Some(t) = &proofs.sms_code {
                results.push(("sms", codes::check(c, &hh, "recovery_sms", t, now, max)?));
            }
            if let Some(t) = &proofs.totp_code {
                results.push(("totp", codes::check_totp(c, &secret, cu, t, now)?));
            }
            if let Some(t) = &proofs.recovery_code {
                results.push((
                    "recovery_code",
                    codes::check_recovery_code(c, &cu.id, t, now)?,
                ));
            }
            if let Some(v) = &proofs.passkey {
                let ok = super::passkeys::check(
                    c,
                    webauthn.as_deref(),
                    &cu.id,
                    &flow.data,
                    Some(v),
                    now,
                )?;
                results.push(("passkey", ok));
            }
            let all_valid = results.iter().all(|(_, ok)| *ok);
            let strong = results.iter().any(|(k, ok)| *ok && codes::is_strong(k));
            // Two independent proofs; with an authenticator app or a passkey enrolled, one
            // must be strong: recovery never bypasses an enrolled factor.
            let enrolled =
                cu.totp_enabled_ms.is_some() || !identity::passkeys_of(c, &cu.id)?.is_empty();
            if !all_valid || results.len() < 2 || (enrolled && !strong) {
                return Ok(None);
            }
            // The risk engine sees every completed recovery; a block refuses it.
            let decision = super::risk::decide_identity(
                c,
                &st,
                konbini_core::risk::EventKind::Recovery,
                cu,
                None,
                None,
                now,
            )?;
            if decision.outcome == konbini_core::risk::Outcome::Block {
                return Ok(Some(Err(super::risk::refused("recovery"))));
            }
            identity::reset_password(c, &cu.id, hash, now + cfg.recovery_hold_ms, now)?;
            customers::revoke_everything(c, &cu.id, now)?;
            super::accounts::clear_login_failures(c, &st, &cu.email)?;
            let proofs_used: Vec<&str> = results.iter().map(|(k, _)| *k).collect();
            super::security_event(
                c,
                &cu.id,
                "recovery.completed",
                &cu.id,
                &json!({"customer_id": cu.id, "proofs": proofs_used}),
                now,
            )?;
            Ok(Some(Ok(now + cfg.recovery_hold_ms)))
        },
        move |c| {
            identity::flow_failed(c, &h2)?;
            throttle::hit(c, &limits, now)
        },
    )
    .await?;
    state.wake_dispatcher();
    let hold_until = out.ok_or_else(refused)??;
    Ok(json!({
        "status": "recovered",
        "recovery_hold_until_ms": hold_until,
        "message": "The password was changed and every device was signed out. Sign in again; until the recovery hold ends, top-ups, card links and contact changes need a device signed in with an authenticator app, a passkey or a recovery code, and payments are limited.",
    }))
}
