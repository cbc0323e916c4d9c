//! Sign-up, login with device binding, sessions and devices.
//!
//! Built so that the identity work (verified contacts, second factors) slots in without a
//! rewrite: a login either presents an already bound device (its id and secret) or binds a
//! new one, and `bind_new_device` is the single place that will demand a second factor.

use crate::error::{ApiError, ApiResult};
use crate::secrets::{new_id, new_token, random_bytes, token_hash};
use crate::state::AppState;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use konbini_core::encoding::{constant_time_eq, hex};
use konbini_core::paycode::SLOT_LIMIT;
use konbini_store::customers::{self, Customer, Device};
use konbini_store::{Conn, StoreError};
use serde_json::json;

fn argon2() -> argon2::Argon2<'static> {
    // OWASP's Argon2id parameters: 19 MiB, 2 passes, 1 lane (the crate's defaults).
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::DEFAULT,
    )
}

/// Hashes a password with Argon2id and a fresh random salt (PHC string).
pub fn hash_password(password: &str) -> ApiResult<String> {
    let salt = random_bytes::<16>();
    argon2()
        .hash_password_with_salt(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| ApiError::internal())
}

pub(crate) fn password_matches(password: &str, phc: &str) -> bool {
    argon2().verify_password(password.as_bytes(), phc).is_ok()
}

/// A normalized email address: trimmed, lower-case ASCII, one `@`, no spaces or controls.
/// Non-ASCII addresses are refused for now rather than risk look-alike duplicates.
pub fn normalize_email(s: &str) -> ApiResult<String> {
    let e = s.trim().to_ascii_lowercase();
    let bad = || ApiError::invalid_param("invalid_email", "email", "Enter a valid email address.");
    if e.len() > 254 || !e.is_ascii() || e.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(bad());
    }
    let (local, domain) = e.split_once('@').ok_or_else(bad)?;
    if local.is_empty() || domain.len() < 3 || !domain.contains('.') || domain.contains('@') {
        return Err(bad());
    }
    Ok(e)
}

/// A phone number in E.164 form: `+` and 8 to 15 digits.
pub fn normalize_phone(s: &str) -> ApiResult<String> {
    let p: String = s.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    let digits = p.strip_prefix('+').unwrap_or("");
    if !(8..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid_param(
            "invalid_phone",
            "phone",
            "Enter the phone number in international form, such as +819012345678.",
        ));
    }
    Ok(p)
}

/// Length and blocklist rules, no composition rules (NIST SP 800-63B); see
/// `konbini_core::password`.
pub fn check_password(password: &str, email: &str) -> ApiResult<()> {
    use konbini_core::password::{PasswordProblem, check};
    check(password, Some(email)).map_err(|p| {
        let code = match p {
            PasswordProblem::TooShort | PasswordProblem::TooLong => "invalid_password",
            PasswordProblem::Common => "password_too_common",
            PasswordProblem::Contextual => "password_contextual",
        };
        ApiError::invalid_param(code, "password", format!("Choose another password: {p}."))
    })
}

/// Signs a customer up. Answers the same whether or not the email is registered; the owner of
/// an existing address is told by message (an outbox event) instead.
pub async fn sign_up(
    state: &AppState,
    email: &str,
    phone: &str,
    password: &str,
) -> ApiResult<serde_json::Value> {
    let email = normalize_email(email)?;
    let phone = normalize_phone(phone)?;
    check_password(password, &email)?;
    let password_hash = hash_password(password)?;
    let now = state.now_ms();
    let customer = Customer {
        id: new_id("cus"),
        email,
        phone,
        password_hash,
        status: "active".into(),
        funding: "wallet".into(),
        funding_card_id: None,
        created_ms: now,
    };
    state
        .db
        .write(move |c| {
            if customers::insert(c, &customer)? {
                super::security_event(
                    c,
                    &customer.id,
                    "customer.created",
                    &customer.id,
                    &json!({"customer_id": customer.id}),
                    now,
                )?;
            } else if let Some(existing) = customers::by_email(c, &customer.email)? {
                super::security_event(
                    c,
                    "anonymous",
                    "customer.signup_attempt_on_existing_email",
                    &existing.id,
                    &json!({"customer_id": existing.id}),
                    now,
                )?;
            }
            Ok::<_, ApiError>(())
        })
        .await?;
    Ok(json!({
        "status": "accepted",
        "message": "If this address can be registered, the account is ready: sign in to continue."
    }))
}

/// A device the client says it already has.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCredential {
    pub id: String,
    pub secret: String,
}

/// Logs in. With a bound device's credentials, that device is used; otherwise a new device is
/// bound and its secret and payment-code key are returned, once.
/// The throttling subjects of one login attempt. The account is keyed by a keyed hash of the
/// normalized email, so unknown and known addresses are counted alike and no address is
/// stored in the clear.
struct LoginSubjects {
    account: String,
    consecutive: String,
    ip: String,
    network: String,
}

impl LoginSubjects {
    fn new(state: &AppState, email: &str, ip: std::net::IpAddr) -> LoginSubjects {
        let key = state.secret.derive("login-throttle");
        let who = hex(&konbini_core::paycode::hmac_sha256(&key, &[email.as_bytes()])[..16]);
        let network = match ip {
            std::net::IpAddr::V4(v4) => {
                let o = v4.octets();
                format!("{}.{}.{}.0/24", o[0], o[1], o[2])
            }
            std::net::IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
            }
        };
        LoginSubjects {
            account: format!("login:acct:{who}"),
            consecutive: format!("login:consec:{who}"),
            ip: format!("login:ip:{ip}"),
            network: format!("login:net:{network}"),
        }
    }
}

fn too_many(retry_after_ms: i64) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::TOO_MANY_REQUESTS,
        kind: "rate_limit_error",
        code: "too_many_attempts",
        message: "Too many failed sign-in attempts; wait and try again, or recover the account."
            .into(),
        param: None,
        retry_after_s: Some(u64::try_from(retry_after_ms.max(1000) / 1000).unwrap_or(1)),
    }
}

/// Logs in. With a bound device's credentials, that device is used; otherwise a new device is
/// bound and its secret and payment-code key are returned, once.
///
/// Failed attempts are throttled in the database (so across nodes) per account, per client IP
/// and per network; after `login_lockout_after` consecutive failures only recovery opens the
/// account. A device already bound to the account is exempt from the account limits, so an
/// attacker hammering the account cannot stop its owner from signing in on their phone.
pub async fn log_in(
    state: &AppState,
    email: &str,
    password: &str,
    device: Option<DeviceCredential>,
    device_name: Option<String>,
    client_ip: std::net::IpAddr,
) -> ApiResult<serde_json::Value> {
    let email = normalize_email(email).map_err(|_| ApiError::invalid_credentials())?;
    let subjects = LoginSubjects::new(state, &email, client_ip);
    let cfg = state.config.clone();
    let now = state.now_ms();
    let found = {
        let email = email.clone();
        state
            .db
            .read(move |c| customers::by_email(c, &email))
            .await?
    };
    // Is the caller on a device already bound to this account?
    let bound_device = match (&device, &found) {
        (Some(d), Some(c)) => {
            let (cid, d) = (c.id.clone(), d.clone());
            state
                .db
                .read(move |c| known_device(c, &cid, &d))
                .await?
                .is_some()
        }
        _ => false,
    };
    let (acct, ip, net, consec) = {
        let (a, i, n, k) = (
            subjects.account.clone(),
            subjects.ip.clone(),
            subjects.network.clone(),
            subjects.consecutive.clone(),
        );
        let window = cfg.login_window_ms;
        state
            .db
            .read(move |c| {
                Ok::<_, ApiError>((
                    konbini_store::stores::failures(c, &a, now, window)?,
                    konbini_store::stores::failures(c, &i, now, window)?,
                    konbini_store::stores::failures(c, &n, now, window)?,
                    konbini_store::stores::failures(c, &k, now, i64::MAX / 4)?,
                ))
            })
            .await?
    };
    let window_end = |start: i64| start + cfg.login_window_ms - now;
    if ip.0 >= cfg.login_failures_per_ip {
        return Err(too_many(window_end(ip.1)));
    }
    if net.0 >= cfg.login_failures_per_network {
        return Err(too_many(window_end(net.1)));
    }
    if !bound_device {
        if consec.0 >= cfg.login_lockout_after {
            return Err(too_many(cfg.login_window_ms));
        }
        if acct.0 >= cfg.login_failures_per_account {
            return Err(too_many(window_end(acct.1)));
        }
    }
    // Verify against a dummy hash when the account does not exist, so timing does not tell.
    let (hash, customer) = match found {
        Some(c) => (c.password_hash.clone(), Some(c)),
        None => (state.dummy_password_hash.as_str().to_string(), None),
    };
    let pw = password.to_string();
    let ok = tokio::task::spawn_blocking(move || password_matches(&pw, &hash))
        .await
        .unwrap_or(false);
    let customer = match (ok, customer) {
        (true, Some(c)) => c,
        _ => {
            let window = cfg.login_window_ms;
            state
                .db
                .write(move |c| {
                    for s in [&subjects.account, &subjects.ip, &subjects.network] {
                        konbini_store::stores::record_code_failure(c, s, now, window)?;
                    }
                    konbini_store::stores::record_code_failure(
                        c,
                        &subjects.consecutive,
                        now,
                        i64::MAX / 4,
                    )?;
                    Ok::<_, ApiError>(())
                })
                .await?;
            return Err(ApiError::invalid_credentials());
        }
    };
    {
        let (a, k) = (subjects.account.clone(), subjects.consecutive.clone());
        state
            .db
            .write(move |c| {
                konbini_store::stores::clear_failures(c, &a)?;
                konbini_store::stores::clear_failures(c, &k)?;
                Ok::<_, ApiError>(())
            })
            .await?;
    }
    if customer.status != "active" {
        return Err(ApiError::forbidden(
            "account_frozen",
            "This account is frozen; contact support.",
        ));
    }
    let token = new_token("ks");
    let session_hash = token_hash(&token);
    let expires = now + state.config.session_absolute_ms;
    let secret = state.secret.clone();
    let name = device_name
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        })
        .unwrap_or_else(|| "phone".into());
    let customer_id = customer.id.clone();
    let (device_out, device_id) = state
        .db
        .write(move |c| {
            let existing = match &device {
                Some(d) => known_device(c, &customer_id, d)?,
                None => None,
            };
            let (out, id) = match existing {
                Some(d) => (json!({"id": d.id, "new": false}), d.id),
                None => {
                    let (d, device_secret) = bind_new_device(c, &customer_id, &name, now)?;
                    let slot = u32::try_from(d.slot).unwrap_or(0);
                    let key = secret.paycode_key(slot, u32::try_from(d.key_generation).unwrap_or(1));
                    super::security_event(c, &customer_id, "device.bound", &customer_id, &json!({"customer_id": customer_id, "device_id": d.id}), now)?;
                    (
                        json!({
                            "id": d.id,
                            "new": true,
                            "secret": device_secret,
                            "payment_code": {"slot": d.slot, "key": hex(&key), "algorithm": "konbini-paycode-v1", "step_seconds": 30}
                        }),
                        d.id,
                    )
                }
            };
            customers::insert_session(c, &session_hash, &customer_id, &id, now, expires)?;
            Ok::<_, ApiError>((out, id))
        })
        .await?;
    let _ = device_id;
    Ok(json!({
        "token": token,
        "customer_id": customer.id,
        "expires_at_ms": expires,
        "device": device_out,
        "server_time_ms": now,
    }))
}

fn known_device(
    c: &mut dyn Conn,
    customer_id: &str,
    cred: &DeviceCredential,
) -> Result<Option<Device>, StoreError> {
    let Some(d) = customers::device_by_id(c, &cred.id)? else {
        return Ok(None);
    };
    let matches = d.customer_id == customer_id
        && d.status == "bound"
        && constant_time_eq(&d.secret_hash, &token_hash(&cred.secret));
    Ok(matches.then_some(d))
}

/// Binds a new device with a fresh random slot; returns it with its secret (shown once).
fn bind_new_device(
    c: &mut dyn Conn,
    customer_id: &str,
    name: &str,
    now: i64,
) -> Result<(Device, String), StoreError> {
    let secret = new_token("kd");
    // Slots are random, so they say nothing about the account or the order of sign-ups. A
    // collision with a live slot (rare below tens of millions of devices) draws again.
    for _ in 0..16 {
        let slot = u32::from_be_bytes(random_bytes::<4>()) % SLOT_LIMIT;
        let d = Device {
            id: new_id("dev"),
            customer_id: customer_id.to_string(),
            slot: i64::from(slot),
            key_generation: 1,
            secret_hash: token_hash(&secret),
            name: name.to_string(),
            status: "bound".into(),
            last_code_counter: 0,
            created_ms: now,
        };
        if customers::insert_device(c, &d)? {
            return Ok((d, secret));
        }
    }
    Err(StoreError::Constraint("no free payment-code slot".into()))
}

pub async fn log_out(state: &AppState, token_hash: Vec<u8>) -> ApiResult<()> {
    let now = state.now_ms();
    state
        .db
        .write(move |c| customers::revoke_session(c, &token_hash, now))
        .await?;
    Ok(())
}

pub async fn list_devices(
    state: &AppState,
    customer_id: String,
    current: String,
) -> ApiResult<serde_json::Value> {
    let devices = state
        .db
        .read(move |c| customers::devices_of(c, &customer_id))
        .await?;
    Ok(json!({
        "data": devices.iter().filter(|d| d.status == "bound").map(|d| json!({
            "id": d.id, "name": d.name, "created_ms": d.created_ms, "current": d.id == current
        })).collect::<Vec<_>>()
    }))
}

/// Revokes one of the customer's devices: its sessions end and its payment codes die.
pub async fn revoke_device(
    state: &AppState,
    customer_id: String,
    device_id: String,
) -> ApiResult<()> {
    let now = state.now_ms();
    state
        .db
        .write(move |c| {
            // The store also ends the device's sessions whether or not the device is this
            // customer's: only an error here rolls that back, so that another customer's
            // device id (or an already revoked one) changes nothing.
            if !customers::revoke_device(c, &customer_id, &device_id, now)? {
                return Err(ApiError::not_found("device"));
            }
            super::security_event(
                c,
                &customer_id,
                "device.revoked",
                &customer_id,
                &json!({"customer_id": customer_id, "device_id": device_id}),
                now,
            )?;
            Ok(())
        })
        .await
}
