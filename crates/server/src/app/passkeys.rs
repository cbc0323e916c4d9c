//! Passkeys (WebAuthn, via webauthn-rs): the phishing-resistant second factor. A passkey is
//! registered from a signed-in session (with a recent authentication) and then binds new
//! devices at log-in, or proves the account in a recovery, as a strong factor.
//!
//! Each ceremony has two steps; the state between them is kept in the database (in the flow
//! the client holds a handle to), so any node can finish what another started.

use super::accounts::handle_hash;
use crate::error::{ApiError, ApiResult};
use crate::extract::CustomerAuth;
use crate::secrets::{new_id, new_token, token_hash};
use crate::state::AppState;
use konbini_store::identity::{self, Flow, StoredPasskey};
use konbini_store::{Conn, StoreError, customers};
use serde_json::{Value, json};
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

/// The relying party for `public_url`: its host is the RP id and the URL the only origin.
/// `None` when the host is not a domain name (WebAuthn does not work on bare IP addresses).
pub fn relying_party(public_url: &str) -> Option<Webauthn> {
    let origin = Url::parse(public_url).ok()?;
    let rp_id = origin.domain()?.to_string();
    WebauthnBuilder::new(&rp_id, &origin)
        .ok()?
        .rp_name("Konbini")
        .build()
        .ok()
}

fn webauthn(state: &AppState) -> ApiResult<&Webauthn> {
    state.webauthn.as_deref().ok_or_else(|| {
        ApiError::unavailable(
            "passkeys_unavailable",
            "Passkeys need the server's public URL to be a domain name.",
        )
    })
}

/// A stable, opaque WebAuthn user handle for a customer (not the customer id itself).
fn user_handle(customer_id: &str) -> Uuid {
    let h = token_hash(customer_id);
    let mut b = [0u8; 16];
    b.copy_from_slice(&h[..16]);
    Uuid::from_bytes(b)
}

fn parse<T: serde::de::DeserializeOwned>(v: &str) -> Option<T> {
    serde_json::from_str(v).ok()
}

/// Starts registering a passkey: the options for `navigator.credentials.create()`.
pub async fn begin_registration(state: &AppState, auth: &CustomerAuth) -> ApiResult<Value> {
    auth.require_recent_auth(state)?;
    // A factor added from a weakly bound device during the hold would lift the hold.
    auth.require_strong_during_hold(state, "adding a second factor")?;
    let wa = webauthn(state)?;
    let id = auth.customer_id.clone();
    let (customer, existing) = state
        .db
        .read(move |c| {
            Ok::<_, StoreError>((customers::by_id(c, &id)?, identity::passkeys_of(c, &id)?))
        })
        .await?;
    let customer = customer.ok_or_else(ApiError::unauthenticated)?;
    let exclude = existing
        .iter()
        .filter_map(|p| parse::<Passkey>(&p.passkey))
        .map(|p| p.cred_id().clone())
        .collect();
    let (options, registration) = wa
        .start_passkey_registration(
            user_handle(&customer.id),
            &customer.email,
            &customer.email,
            Some(exclude),
        )
        .map_err(|_| ApiError::internal())?;
    let now = state.now_ms();
    let handle = new_token("kpr");
    let flow = Flow {
        handle_hash: token_hash(&handle),
        kind: "passkey_registration".into(),
        customer_id: customer.id.clone(),
        data: serde_json::to_string(&registration).map_err(|_| ApiError::internal())?,
        attempts: 0,
        expires_ms: now + state.config.code_ttl_ms,
        done_ms: None,
        created_ms: now,
    };
    state
        .db
        .write(move |c| identity::insert_flow(c, &flow))
        .await?;
    Ok(json!({
        "registration_id": handle,
        "options": options,
        "expires_at_ms": now + state.config.code_ttl_ms,
    }))
}

fn rejected() -> ApiError {
    ApiError::invalid(
        "passkey_rejected",
        "The passkey answer does not check out (wrong ceremony, origin or signature), or the ceremony expired.",
    )
}

/// Finishes registering a passkey with the authenticator's answer.
pub async fn finish_registration(
    state: &AppState,
    auth: &CustomerAuth,
    registration_id: &str,
    credential: Value,
    name: Option<String>,
) -> ApiResult<Value> {
    auth.require_recent_auth(state)?;
    auth.require_strong_during_hold(state, "adding a second factor")?;
    let wa = webauthn(state)?;
    let hh = handle_hash(registration_id, "kpr").ok_or_else(rejected)?;
    let now = state.now_ms();
    let h = hh.clone();
    let flow = state
        .db
        .read(move |c| identity::flow_by_handle(c, &h, "passkey_registration"))
        .await?
        .filter(|f| f.customer_id == auth.customer_id && f.live(now, 1))
        .ok_or_else(rejected)?;
    let registration: PasskeyRegistration = parse(&flow.data).ok_or_else(rejected)?;
    let answer: RegisterPublicKeyCredential =
        serde_json::from_value(credential).map_err(|_| rejected())?;
    let passkey = wa
        .finish_passkey_registration(&answer, &registration)
        .map_err(|_| rejected())?;
    let stored = StoredPasskey {
        id: new_id("pk"),
        customer_id: auth.customer_id.clone(),
        credential_id: AsRef::<[u8]>::as_ref(passkey.cred_id()).to_vec(),
        passkey: serde_json::to_string(&passkey).map_err(|_| ApiError::internal())?,
        name: name
            .map(|n| n.chars().filter(|c| !c.is_control()).take(64).collect())
            .filter(|n: &String| !n.trim().is_empty())
            .unwrap_or_else(|| "passkey".into()),
        created_ms: now,
        last_used_ms: None,
    };
    let mut out = json!({"id": stored.id, "name": stored.name, "created_ms": now});
    let issued = state
        .db
        .write(move |c| {
            if !identity::finish_flow(c, &hh, now)? || !identity::insert_passkey(c, &stored)? {
                return Ok(None);
            }
            let id = &stored.customer_id;
            // With a strong factor enrolled, recovery needs a strong proof: a customer whose
            // only strong factor is this passkey gets recovery codes for the day it is lost.
            let codes = if identity::recovery_codes_left(c, id)? == 0 {
                Some(super::codes::issue_recovery_codes(c, id, now)?)
            } else {
                None
            };
            super::security_event(
                c,
                id,
                "mfa.passkey_added",
                id,
                &json!({"customer_id": id, "passkey_id": stored.id}),
                now,
            )?;
            Ok::<_, StoreError>(Some(codes))
        })
        .await?;
    state.wake_dispatcher();
    match issued {
        None => Err(rejected()),
        Some(codes) => {
            if let Some(codes) = codes {
                out["recovery_codes"] = json!(codes);
            }
            Ok(out)
        }
    }
}

/// The customer's passkeys.
pub async fn list(state: &AppState, auth: &CustomerAuth) -> ApiResult<Value> {
    let id = auth.customer_id.clone();
    let keys = state
        .db
        .read(move |c| identity::passkeys_of(c, &id))
        .await?;
    Ok(json!({
        "data": keys.iter().map(|k| json!({
            "id": k.id, "name": k.name, "created_ms": k.created_ms, "last_used_ms": k.last_used_ms
        })).collect::<Vec<_>>()
    }))
}

/// Removes a passkey: a recent authentication AND a strong factor (a TOTP or recovery
/// code), like removing the authenticator app — a stolen session with the password must not
/// be able to strip the account's strongest factor.
pub async fn remove(
    state: &AppState,
    auth: &CustomerAuth,
    id: String,
    factor: super::codes::Factor,
) -> ApiResult<()> {
    auth.require_recent_auth(state)?;
    super::codes::require_code_factor(&factor)?;
    let limits = super::codes::factor_limits(&state.config, &auth.customer_id);
    super::accounts::not_throttled(state, &limits).await?;
    let now = state.now_ms();
    let (cid, secret, max) = (
        auth.customer_id.clone(),
        state.secret.clone(),
        state.config.max_code_attempts,
    );
    state
        .db
        .write(move |c| {
            let Some(cu) = customers::by_id(c, &cid)? else {
                return Err(ApiError::unauthenticated());
            };
            if !identity::passkeys_of(c, &cid)?.iter().any(|k| k.id == id) {
                return Err(ApiError::not_found("passkey"));
            }
            if !factor.strong()
                || !super::codes::check_factor(c, &secret, &cu, &factor, (&[], ""), now, max)?
            {
                super::throttle::hit(c, &limits, now)?;
                return Ok(Err(ApiError::invalid(
                    "invalid_code",
                    "Give a current code from the authenticator app, or a recovery code.",
                )
                .with_param("factor")));
            }
            if !identity::delete_passkey(c, &cid, &id)? {
                return Err(ApiError::not_found("passkey"));
            }
            super::security_event(
                c,
                &cid,
                "mfa.passkey_removed",
                &cid,
                &json!({"customer_id": cid, "passkey_id": id}),
                now,
            )?;
            Ok(Ok(()))
        })
        .await??;
    state.wake_dispatcher();
    Ok(())
}

/// Starts a passkey assertion inside a live flow (a log-in challenge, or a recovery whose
/// first proof was shown): the options for `navigator.credentials.get()`, with the state
/// kept in the flow's data under `passkey_auth`.
pub async fn begin_assertion(state: &AppState, flow: &Flow) -> ApiResult<Value> {
    let wa = webauthn(state)?;
    let id = flow.customer_id.clone();
    let keys: Vec<Passkey> = state
        .db
        .read(move |c| identity::passkeys_of(c, &id))
        .await?
        .iter()
        .filter_map(|k| parse(&k.passkey))
        .collect();
    if keys.is_empty() {
        return Err(ApiError::invalid(
            "no_passkey",
            "This account has no passkey; use another second factor.",
        ));
    }
    let (options, assertion) = wa
        .start_passkey_authentication(&keys)
        .map_err(|_| ApiError::internal())?;
    let mut data: Value = serde_json::from_str(&flow.data).unwrap_or_else(|_| json!({}));
    data["passkey_auth"] = serde_json::to_value(&assertion).map_err(|_| ApiError::internal())?;
    let (hh, data) = (flow.handle_hash.clone(), data.to_string());
    state
        .db
        .write(move |c| identity::set_flow_data(c, &hh, &data))
        .await?;
    Ok(json!({"options": options}))
}

/// Checks a passkey assertion against the state kept in `flow_data`, and records the
/// passkey's new signature counter. Any malformed part is simply a failed proof.
pub fn check(
    c: &mut dyn Conn,
    wa: Option<&Webauthn>,
    customer_id: &str,
    flow_data: &str,
    credential: Option<&Value>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let (Some(wa), Some(credential)) = (wa, credential) else {
        return Ok(false);
    };
    let data: Value = serde_json::from_str(flow_data).unwrap_or(Value::Null);
    let Ok(assertion) =
        serde_json::from_value::<PasskeyAuthentication>(data["passkey_auth"].clone())
    else {
        return Ok(false);
    };
    let Ok(answer) = serde_json::from_value::<PublicKeyCredential>(credential.clone()) else {
        return Ok(false);
    };
    let Ok(result) = wa.finish_passkey_authentication(&answer, &assertion) else {
        return Ok(false);
    };
    for stored in identity::passkeys_of(c, customer_id)? {
        let Some(mut key) = parse::<Passkey>(&stored.passkey) else {
            continue;
        };
        if key.cred_id() == result.cred_id() {
            key.update_credential(&result);
            let json =
                serde_json::to_string(&key).map_err(|e| StoreError::Decode(e.to_string()))?;
            identity::passkey_used(c, &stored.id, &json, now_ms)?;
            return Ok(true);
        }
    }
    Ok(false)
}
