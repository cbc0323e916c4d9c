//! Sign-up with verified contacts, log-in with device binding and second factors, step-up
//! re-authentication, sessions and devices.
//!
//! A password alone never binds a device: a log-in from a device that is not bound to the
//! account answers with a challenge that only a second factor (an SMS code to the verified
//! phone, TOTP, or a recovery code) completes. The first device is bound by the sign-up
//! verification itself (codes to both the email and the phone).

use super::codes::{self, Channel, Factor, NewCode};
use super::throttle;
use crate::error::{ApiError, ApiResult};
use crate::secrets::{new_id, new_token, random_bytes, token_hash};
use crate::state::AppState;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use konbini_core::encoding::{constant_time_eq, hex, unhex};
use konbini_core::paycode::SLOT_LIMIT;
use konbini_store::customers::{self, Customer, Device};
use konbini_store::identity::{self, Flow};
use konbini_store::{Conn, StoreError};
use serde_json::{Value, json};
use std::net::IpAddr;

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
/// `email`, when known, adds the rule against passwords built from it.
pub fn check_password(password: &str, email: Option<&str>) -> ApiResult<()> {
    use konbini_core::password::{PasswordProblem, check};
    check(password, email).map_err(|p| {
        let code = match p {
            PasswordProblem::TooShort | PasswordProblem::TooLong => "invalid_password",
            PasswordProblem::Common => "password_too_common",
            PasswordProblem::Contextual => "password_contextual",
        };
        ApiError::invalid_param(code, "password", format!("Choose another password: {p}."))
    })
}

/// Hashes a password off the async threads (Argon2id takes tens of milliseconds).
pub async fn hash_password_async(password: &str) -> ApiResult<String> {
    let pw = password.to_string();
    tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(|_| ApiError::internal())?
}

/// Verifies a password off the async threads.
pub async fn password_matches_async(password: &str, phc: &str) -> bool {
    let (pw, phc) = (password.to_string(), phc.to_string());
    tokio::task::spawn_blocking(move || password_matches(&pw, &phc))
        .await
        .unwrap_or(false)
}

/// A new flow handle for the client and the flow row that stores only its hash.
fn new_flow(kind: &str, customer_id: &str, data: Value, ttl_ms: i64, now: i64) -> (String, Flow) {
    let prefix = match kind {
        "signup" => "ksu",
        "login" => "klc",
        "recovery" => "krc",
        _ => "kcc",
    };
    let handle = new_token(prefix);
    let flow = Flow {
        handle_hash: token_hash(&handle),
        kind: kind.to_string(),
        customer_id: customer_id.to_string(),
        data: data.to_string(),
        attempts: 0,
        expires_ms: now + ttl_ms,
        done_ms: None,
        created_ms: now,
    };
    (handle, flow)
}

/// A flow handle as the client sent it: our prefix and hex only, else it cannot be ours.
pub fn handle_hash(handle: &str, prefix: &str) -> Option<Vec<u8>> {
    let ok = handle.len() == prefix.len() + 65
        && handle.starts_with(prefix)
        && handle.as_bytes()[prefix.len()] == b'_'
        && handle[prefix.len() + 1..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit());
    ok.then(|| token_hash(handle))
}

fn invalid_code() -> ApiError {
    ApiError::invalid(
        "invalid_code",
        "The code is wrong, used or expired. Ask for a new one if needed.",
    )
}

/// Signs a customer up: creates the account unverified and sends a code to the email and
/// another to the phone; `verify_sign_up` with both codes opens it and binds the first device.
///
/// The answer is the same whether or not the email (or phone) is registered, and so is its
/// timing: everything that depends on existing accounts runs after the answer, in the
/// background. The owner of an existing address is told by message instead.
pub async fn sign_up(
    state: &AppState,
    email: &str,
    phone: &str,
    password: &str,
    ip: IpAddr,
) -> ApiResult<Value> {
    let email = normalize_email(email)?;
    let phone = normalize_phone(phone)?;
    check_password(password, Some(&email))?;
    let cfg = state.config.clone();
    let now = state.now_ms();
    let limits = throttle::per_client(
        "signup",
        ip,
        cfg.signups_per_ip,
        cfg.signups_per_network,
        cfg.request_window_ms,
    );
    state
        .db
        .write(move |c| throttle::take(c, &limits, now))
        .await??;
    let password_hash = hash_password_async(password).await?;
    let (handle, flow) = new_flow("signup", "", json!({}), cfg.code_ttl_ms, now);
    let st = state.clone();
    tokio::spawn(async move {
        let secret = st.secret.clone();
        let r = st
            .db
            .write(move |c| {
                register(
                    c,
                    &secret,
                    &cfg,
                    &email,
                    &phone,
                    &password_hash,
                    flow.clone(),
                    now,
                )
            })
            .await;
        match r {
            Ok(()) => st.wake_dispatcher(),
            Err(e) => tracing::error!(error = %e, "sign-up registration failed"),
        }
    });
    Ok(json!({
        "status": "verification_required",
        "signup_id": handle,
        "expires_at_ms": now + state.config.code_ttl_ms,
        "message": "We sent a code to the email address and another to the phone. Send both to /v1/signup/verify to open the account."
    }))
}

/// The account-dependent part of a sign-up (after the answer).
#[allow(clippy::too_many_arguments)]
fn register(
    c: &mut dyn Conn,
    secret: &crate::secrets::MasterSecret,
    cfg: &crate::config::Config,
    email: &str,
    phone: &str,
    password_hash: &str,
    mut flow: Flow,
    now: i64,
) -> Result<(), StoreError> {
    let customer_id = match customers::by_email(c, email)? {
        None => {
            let customer = Customer::new(&new_id("cus"), email, phone, password_hash, now);
            if !customers::insert(c, &customer)? {
                return Ok(()); // the same address raced in; that sign-up sends the codes
            }
            konbini_store::audit::append(
                c,
                &customer.id,
                "customer.created",
                &customer.id,
                &json!({"customer_id": customer.id}).to_string(),
                now,
            )?;
            customer.id
        }
        // Never verified: whoever signs up again takes it over (no squatting an address).
        // Sign-ups per account are bounded too, so nobody floods an address with codes or
        // warnings by signing it up again and again (the answer stays the same).
        Some(existing)
            if identity::flows_since(c, &existing.id, "signup", now - cfg.request_window_ms)?
                >= cfg.challenges_per_account =>
        {
            return Ok(());
        }
        Some(existing)
            if existing.email_verified_ms.is_none() && existing.phone_verified_ms.is_none() =>
        {
            identity::reregister(c, &existing.id, phone, password_hash)?;
            // Earlier sign-ups die: a code sent for one of them must not verify the new phone
            // and password (the victim's own code would otherwise hand the account over).
            identity::close_flows(c, &existing.id, "signup", now)?;
            existing.id
        }
        Some(existing) => {
            // Counted like a sign-up of the account (one warning per attempt, bounded).
            let mut marker = flow.clone();
            marker.customer_id = existing.id.clone();
            marker.done_ms = Some(now);
            identity::insert_flow(c, &marker)?;
            return super::security_event(
                c,
                "anonymous",
                "customer.signup_attempt_on_existing_email",
                &existing.id,
                &json!({"customer_id": existing.id}),
                now,
            );
        }
    };
    flow.customer_id = customer_id.clone();
    identity::insert_flow(c, &flow)?;
    send_signup_codes(
        c,
        secret,
        cfg,
        &flow.handle_hash,
        &customer_id,
        email,
        phone,
        now,
    )
}

/// Sends the sign-up codes: one to the email, one to the phone, unless the phone is already
/// verified on another account, whose owner is told instead (the sign-up cannot finish).
#[allow(clippy::too_many_arguments)]
fn send_signup_codes(
    c: &mut dyn Conn,
    secret: &crate::secrets::MasterSecret,
    cfg: &crate::config::Config,
    flow: &[u8],
    customer_id: &str,
    email: &str,
    phone: &str,
    now: i64,
) -> Result<(), StoreError> {
    let code = |purpose, channel, to| NewCode {
        customer_id,
        flow,
        purpose,
        channel,
        to: Some(to),
        ttl_ms: cfg.code_ttl_ms,
    };
    codes::send(c, secret, &code("email", Channel::Email, email), now)?;
    match customers::by_verified_phone(c, phone)? {
        Some(other) if other.id != customer_id => super::security_event(
            c,
            "anonymous",
            "customer.signup_attempt_on_existing_phone",
            &other.id,
            &json!({"customer_id": other.id}),
            now,
        ),
        _ => codes::send(c, secret, &code("phone", Channel::Sms, phone), now),
    }
}

/// Completes a sign-up with the code sent to the email and the one sent to the phone: both
/// contact points become verified and this device is bound, with a session.
pub async fn verify_sign_up(
    state: &AppState,
    signup_id: &str,
    email_code: &str,
    phone_code: &str,
    new_device: NewDevice,
    ip: IpAddr,
) -> ApiResult<Value> {
    let hh = handle_hash(signup_id, "ksu").ok_or_else(invalid_code)?;
    let cfg = state.config.clone();
    let now = state.now_ms();
    let limits = code_check_limits(&cfg, ip);
    not_throttled(state, &limits).await?;
    let (secret, name) = (state.secret.clone(), device_label(new_device.name));
    let installation = new_device
        .installation
        .as_deref()
        .map(|i| state.secret.installation_fingerprint(i));
    let st = state.clone();
    let (e, p) = (email_code.to_string(), phone_code.to_string());
    let h2 = hh.clone();
    let out = codes::attempt(
        state,
        move |c| {
            let Some(flow) = identity::flow_by_handle(c, &hh, "signup")? else {
                return Ok(None);
            };
            let ok = flow.live(now, cfg.max_code_attempts)
                && codes::check(c, &hh, "email", &e, now, cfg.max_code_attempts)?
                && codes::check(c, &hh, "phone", &p, now, cfg.max_code_attempts)?
                && identity::finish_flow(c, &hh, now)?;
            if !ok {
                return Ok(None);
            }
            identity::mark_verified(c, &flow.customer_id, true, true, now)?;
            // The first device is a binding too: one phone signing up account after account
            // is what device.accounts counts.
            let customer = customers::by_id(c, &flow.customer_id)?
                .ok_or_else(|| StoreError::Decode("sign-up without its customer".into()))?;
            if let Some(refused) = decide_binding(c, &st, &customer, installation.as_deref(), now)? {
                return Ok(Some(Err(refused)));
            }
            let binding = Binding {
                name: &name,
                bound_by: "signup",
                installation: installation.as_deref(),
            };
            let out =
                bind_device_and_open_session(c, &secret, &cfg, &flow.customer_id, binding, now)?;
            // The first device: audited; the welcome message below tells the customer.
            konbini_store::audit::append(
                c,
                &flow.customer_id,
                "device.bound",
                &flow.customer_id,
                &json!({"customer_id": flow.customer_id, "device_id": out["device"]["id"], "factor": "signup"}).to_string(),
                now,
            )?;
            super::security_event(
                c,
                &flow.customer_id,
                "customer.verified",
                &flow.customer_id,
                &json!({"customer_id": flow.customer_id}),
                now,
            )?;
            Ok(Some(Ok(out)))
        },
        move |c| {
            identity::flow_failed(c, &h2)?;
            throttle::hit(c, &limits, now)
        },
    )
    .await?;
    state.wake_dispatcher();
    out.ok_or_else(invalid_code)?
}

/// What the app says about the device it is about to bind.
#[derive(Debug, Clone, Default)]
pub struct NewDevice {
    /// A label for the customer's device list.
    pub name: Option<String>,
    /// The app's installation id (random, made once per installation); only its keyed
    /// fingerprint is kept, to count the accounts bound on one phone.
    pub installation: Option<String>,
}

/// Checks an installation id: 16 to 128 characters of `A-Z a-z 0-9 - _`.
pub fn valid_installation_id(id: &str) -> bool {
    (16..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Asks the risk engine about binding a device (journaled); `Some` with the answer when it
/// blocks. The installation, when known, gives `device.accounts`.
fn decide_binding(
    c: &mut dyn Conn,
    state: &AppState,
    customer: &Customer,
    installation: Option<&[u8]>,
    now: i64,
) -> Result<Option<ApiError>, StoreError> {
    let accounts = match installation {
        Some(i) => Some(customers::accounts_on_installation(c, i, &customer.id)?),
        None => None,
    };
    let decision = super::risk::decide_identity(
        c,
        state,
        konbini_core::risk::EventKind::DeviceBinding,
        customer,
        None,
        accounts,
        now,
    )?;
    Ok((decision.outcome == konbini_core::risk::Outcome::Block)
        .then(|| super::risk::refused("device binding")))
}

/// Refuses with `429` when a client limit is exhausted.
pub async fn not_throttled(state: &AppState, limits: &[throttle::Limit]) -> ApiResult<()> {
    let now = state.now_ms();
    let limits = limits.to_vec();
    match state
        .db
        .read(move |c| throttle::exhausted(c, &limits, now))
        .await?
    {
        Some(ms) => Err(throttle::too_many(ms)),
        None => Ok(()),
    }
}

/// Sends fresh sign-up codes (the first ones expired or got lost). Answers the same whatever
/// the handle; at most `max_code_sends` codes per flow.
pub async fn resend_sign_up(state: &AppState, signup_id: &str) -> ApiResult<Value> {
    if let Some(hh) = handle_hash(signup_id, "ksu") {
        let cfg = state.config.clone();
        let secret = state.secret.clone();
        let now = state.now_ms();
        state
            .db
            .write(move |c| {
                let Some(mut flow) = identity::flow_by_handle(c, &hh, "signup")? else {
                    return Ok(());
                };
                let Some(customer) = customers::by_id(c, &flow.customer_id)? else {
                    return Ok(());
                };
                let sent = identity::verifications_in_flow(c, &hh, "email")?;
                if flow.done_ms.is_some() || sent >= cfg.max_code_sends || customer.verified() {
                    return Ok(());
                }
                // A resend also extends the flow to the new codes' life.
                flow.expires_ms = now + cfg.code_ttl_ms;
                identity::extend_flow(c, &hh, flow.expires_ms)?;
                send_signup_codes(
                    c,
                    &secret,
                    &cfg,
                    &hh,
                    &customer.id,
                    &customer.email,
                    &customer.phone,
                    now,
                )
            })
            .await?;
        state.wake_dispatcher();
    }
    Ok(
        json!({"status": "accepted", "message": "If the sign-up is still open, new codes are on their way."}),
    )
}

/// Limits on wrong codes per client (IP and network), across every flow.
fn code_check_limits(cfg: &crate::config::Config, ip: IpAddr) -> Vec<throttle::Limit> {
    throttle::per_client(
        "code",
        ip,
        cfg.login_failures_per_ip,
        cfg.login_failures_per_network,
        cfg.login_window_ms,
    )
}

fn device_label(name: Option<String>) -> String {
    name.map(|n| {
        n.chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect::<String>()
    })
    .filter(|n| !n.trim().is_empty())
    .unwrap_or_else(|| "phone".into())
}

/// A device the client says it already has.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceCredential {
    pub id: String,
    pub secret: String,
}

/// The throttling subjects of one login attempt. The account is keyed by a keyed hash of the
/// normalized email, so unknown and known addresses are counted alike and no address is
/// stored in the clear.
#[derive(Clone)]
struct LoginSubjects {
    account: String,
    consecutive: String,
    ip: String,
    network: String,
    /// A bound device presented with the attempt: its own limit replaces the account's (a
    /// stolen phone cannot guess the password forever, and cannot lock the account either).
    device: Option<String>,
}

impl LoginSubjects {
    fn new(state: &AppState, email: &str, ip: IpAddr) -> LoginSubjects {
        let key = state.secret.derive("login-throttle");
        let who = hex(&konbini_core::paycode::hmac_sha256(&key, &[email.as_bytes()])[..16]);
        LoginSubjects {
            account: format!("login:acct:{who}"),
            consecutive: format!("login:consec:{who}"),
            ip: format!("login:ip:{ip}"),
            network: format!("login:net:{}", throttle::network(ip)),
            device: None,
        }
    }

    /// Counts one failure (a wrong password or a wrong second factor).
    fn record_failure(&self, c: &mut dyn Conn, now: i64, window: i64) -> Result<(), StoreError> {
        for s in [&self.account, &self.ip, &self.network]
            .into_iter()
            .chain(self.device.as_ref())
        {
            konbini_store::stores::record_code_failure(c, s, now, window)?;
        }
        konbini_store::stores::record_code_failure(c, &self.consecutive, now, i64::MAX / 4)
    }

    fn clear(&self, c: &mut dyn Conn) -> Result<(), StoreError> {
        konbini_store::stores::clear_failures(c, &self.account)?;
        konbini_store::stores::clear_failures(c, &self.consecutive)
    }
}

fn too_many(retry_after_ms: i64) -> ApiError {
    ApiError {
        message: "Too many failed sign-in attempts; wait and try again, or recover the account."
            .into(),
        ..throttle::too_many(retry_after_ms)
    }
}

/// Clears the log-in failure counters of an account (after a recovery: the way out of a
/// lock-out).
pub fn clear_login_failures(
    c: &mut dyn Conn,
    state: &AppState,
    email: &str,
) -> Result<(), StoreError> {
    LoginSubjects::new(state, email, IpAddr::from([0, 0, 0, 0])).clear(c)
}

/// Checks the log-in throttles; `bound_device` callers are exempt from the per-account ones.
async fn login_throttled(
    state: &AppState,
    subjects: &LoginSubjects,
    bound_device: bool,
) -> ApiResult<()> {
    let cfg = state.config.clone();
    let now = state.now_ms();
    let (a, i, n, k) = (
        subjects.account.clone(),
        subjects.ip.clone(),
        subjects.network.clone(),
        subjects.consecutive.clone(),
    );
    let d = subjects.device.clone();
    let window = cfg.login_window_ms;
    let (acct, ip, net, consec, dev) = state
        .db
        .read(move |c| {
            let dev = match &d {
                Some(d) => konbini_store::stores::failures(c, d, now, window)?,
                None => (0, now),
            };
            Ok::<_, ApiError>((
                konbini_store::stores::failures(c, &a, now, window)?,
                konbini_store::stores::failures(c, &i, now, window)?,
                konbini_store::stores::failures(c, &n, now, window)?,
                konbini_store::stores::failures(c, &k, now, i64::MAX / 4)?,
                dev,
            ))
        })
        .await?;
    let window_end = |start: i64| start + cfg.login_window_ms - now;
    if ip.0 >= cfg.login_failures_per_ip {
        return Err(too_many(window_end(ip.1)));
    }
    if net.0 >= cfg.login_failures_per_network {
        return Err(too_many(window_end(net.1)));
    }
    if dev.0 >= cfg.login_failures_per_account {
        return Err(too_many(window_end(dev.1)));
    }
    if !bound_device {
        if consec.0 >= cfg.login_lockout_after {
            return Err(too_many(cfg.login_window_ms));
        }
        if acct.0 >= cfg.login_failures_per_account {
            return Err(too_many(window_end(acct.1)));
        }
    }
    Ok(())
}

/// Logs in.
///
/// - From a device already bound to the account (its id and secret): a new session.
/// - From any other device: `second_factor_required` with a challenge; `complete_log_in`
///   with an SMS code, a TOTP code or a recovery code binds the device. The owner is told.
/// - An account whose contacts are not verified yet gets fresh sign-up codes instead.
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
    new_device: NewDevice,
    client_ip: IpAddr,
) -> ApiResult<(bool, Value)> {
    let email = normalize_email(email).map_err(|_| ApiError::invalid_credentials())?;
    let mut subjects = LoginSubjects::new(state, &email, client_ip);
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
    let bound = match (&device, &found) {
        (Some(d), Some(c)) => {
            let (cid, d) = (c.id.clone(), d.clone());
            state.db.read(move |c| known_device(c, &cid, &d)).await?
        }
        _ => None,
    };
    subjects.device = bound.as_ref().map(|d| format!("login:dev:{}", d.id));
    login_throttled(state, &subjects, bound.is_some()).await?;
    // Verify against a dummy hash when the account does not exist, so timing does not tell.
    let (hash, customer) = match found {
        Some(c) => (c.password_hash.clone(), Some(c)),
        None => (state.dummy_password_hash.as_str().to_string(), None),
    };
    let ok = password_matches_async(password, &hash).await;
    let customer = match (ok, customer) {
        (true, Some(c)) => c,
        _ => {
            let window = cfg.login_window_ms;
            state
                .db
                .write(move |c| subjects.record_failure(c, now, window))
                .await?;
            return Err(ApiError::invalid_credentials());
        }
    };
    if customer.status != "active" {
        return Err(ApiError::forbidden(
            "account_frozen",
            "This account is frozen; contact support.",
        ));
    }
    let secret = state.secret.clone();
    let st = state.clone();
    let name = device_label(new_device.name);
    let installation = new_device
        .installation
        .as_deref()
        .map(|i| hex(&state.secret.installation_fingerprint(i)));
    let body = state
        .db
        .write(move |c| {
            subjects.clear(c)?;
            // The risk engine sees every successful password check (docs/risk.md): a block
            // refuses the sign-in, a step-up asks even a bound device for a second factor.
            let decision = super::risk::decide_identity(
                c,
                &st,
                konbini_core::risk::EventKind::Login,
                &customer,
                bound.as_ref().map(|d| d.created_ms),
                None,
                now,
            )?;
            if decision.outcome == konbini_core::risk::Outcome::Block {
                return Ok(Err(super::risk::refused("sign-in")));
            }
            let bound = bound
                .clone()
                .filter(|_| decision.outcome != konbini_core::risk::Outcome::StepUp);
            if let Some(d) = &bound {
                let (token, expires) = open_session(c, &cfg, &customer.id, &d.id, now)?;
                return Ok(Ok((
                    true,
                    session_body(&token, &customer.id, expires, json!({"id": d.id, "new": false}), now),
                )));
            }
            if !customer.verified() {
                // Sign-up never finished: send fresh codes to the contacts given at sign-up.
                if identity::flows_since(c, &customer.id, "signup", now - cfg.login_window_ms)?
                    >= cfg.challenges_per_account
                {
                    return Ok(Err(too_many(cfg.login_window_ms)));
                }
                let (handle, flow) = new_flow("signup", &customer.id, json!({}), cfg.code_ttl_ms, now);
                identity::insert_flow(c, &flow)?;
                send_signup_codes(c, &secret, &cfg, &flow.handle_hash, &customer.id, &customer.email, &customer.phone, now)?;
                return Ok(Ok((
                    false,
                    json!({"status": "verification_required", "signup_id": handle, "expires_at_ms": flow.expires_ms}),
                )));
            }
            // Each challenge may send an SMS: bounded per account so nobody pumps them.
            if identity::flows_since(c, &customer.id, "login", now - cfg.login_window_ms)?
                >= cfg.challenges_per_account
            {
                return Ok(Err(too_many(cfg.login_window_ms)));
            }
            let (handle, flow) = new_flow("login", &customer.id, json!({"device_name": name, "installation": installation}), cfg.code_ttl_ms, now);
            identity::insert_flow(c, &flow)?;
            let totp = customer.totp_enabled_ms.is_some();
            let passkeys = !identity::passkeys_of(c, &customer.id)?.is_empty();
            // An SMS goes out unasked only when the account has nothing stronger.
            let send_sms = !totp && !passkeys;
            if send_sms {
                codes::send(c, &secret, &login_sms(&customer.id, &flow.handle_hash, &cfg), now)?;
            }
            super::security_event(
                c,
                &customer.id,
                "login.second_factor_required",
                &customer.id,
                &json!({"customer_id": customer.id}),
                now,
            )?;
            let mut methods = vec!["sms"];
            if totp {
                methods.insert(0, "totp");
            }
            if passkeys {
                methods.insert(0, "passkey");
            }
            methods.push("recovery_code");
            Ok::<_, StoreError>(Ok((
                false,
                json!({
                    "status": "second_factor_required",
                    "challenge": handle,
                    "methods": methods,
                    "sms_sent": send_sms,
                    "expires_at_ms": flow.expires_ms,
                }),
            )))
        })
        .await??;
    state.wake_dispatcher();
    Ok(body)
}

fn login_sms<'a>(customer_id: &'a str, flow: &'a [u8], cfg: &crate::config::Config) -> NewCode<'a> {
    NewCode {
        customer_id,
        flow,
        purpose: "login_sms",
        channel: Channel::Sms,
        to: None,
        ttl_ms: cfg.code_ttl_ms,
    }
}

/// Sends (again) the SMS code of a log-in challenge; at most `max_code_sends` per challenge.
/// Answers the same whatever the handle.
pub async fn send_login_sms(state: &AppState, challenge: &str) -> ApiResult<Value> {
    if let Some(hh) = handle_hash(challenge, "klc") {
        let cfg = state.config.clone();
        let secret = state.secret.clone();
        let now = state.now_ms();
        state
            .db
            .write(move |c| {
                let Some(flow) = identity::flow_by_handle(c, &hh, "login")? else {
                    return Ok(());
                };
                if !flow.live(now, cfg.max_code_attempts)
                    || identity::verifications_in_flow(c, &hh, "login_sms")? >= cfg.max_code_sends
                {
                    return Ok(());
                }
                codes::send(c, &secret, &login_sms(&flow.customer_id, &hh, &cfg), now)
            })
            .await?;
        state.wake_dispatcher();
    }
    Ok(
        json!({"status": "accepted", "message": "If the challenge is still open, a code is on its way to the verified phone."}),
    )
}

/// Starts a passkey assertion for a log-in challenge: the options for the authenticator.
pub async fn begin_passkey_log_in(state: &AppState, challenge: &str) -> ApiResult<Value> {
    let hh = handle_hash(challenge, "klc").ok_or_else(invalid_code)?;
    let now = state.now_ms();
    let max = state.config.max_code_attempts;
    let flow = state
        .db
        .read(move |c| identity::flow_by_handle(c, &hh, "login"))
        .await?
        .filter(|f| f.live(now, max))
        .ok_or_else(invalid_code)?;
    super::passkeys::begin_assertion(state, &flow).await
}

/// Completes a log-in challenge with a second factor: binds the device and opens a session.
/// A wrong factor counts against the challenge (it dies after `max_code_attempts`) and as a
/// failed log-in of the account.
pub async fn complete_log_in(
    state: &AppState,
    challenge: &str,
    factor: Factor,
    client_ip: IpAddr,
) -> ApiResult<Value> {
    let hh = handle_hash(challenge, "klc").ok_or_else(invalid_code)?;
    let cfg = state.config.clone();
    let now = state.now_ms();
    let limits = code_check_limits(&cfg, client_ip);
    not_throttled(state, &limits).await?;
    let st = state.clone();
    let webauthn = state.webauthn.clone();
    let secret = state.secret.clone();
    let h2 = hh.clone();
    let h = hh.clone();
    let flow = state
        .db
        .read(move |c| identity::flow_by_handle(c, &h, "login"))
        .await?;
    let customer = match &flow {
        Some(f) => {
            let id = f.customer_id.clone();
            state.db.read(move |c| customers::by_id(c, &id)).await?
        }
        None => None,
    };
    let subjects = customer
        .as_ref()
        .map(|cu| LoginSubjects::new(state, &cu.email, client_ip));
    let (succeeded, window) = (subjects.clone(), cfg.login_window_ms);
    let out = codes::attempt(
        state,
        move |c| {
            let (Some(flow), Some(customer)) = (&flow, &customer) else {
                return Ok(None);
            };
            let ok = flow.live(now, cfg.max_code_attempts)
                && customer.status == "active"
                && if factor.method == "passkey" {
                    super::passkeys::check(c, webauthn.as_deref(), &customer.id, &flow.data, factor.credential.as_ref(), now)?
                } else {
                    codes::check_factor(c, &secret, customer, &factor, (&hh, "login_sms"), now, cfg.max_code_attempts)?
                }
                && identity::finish_flow(c, &hh, now)?;
            if !ok {
                return Ok(None);
            }
            if let Some(s) = &succeeded {
                s.clear(c)?;
            }
            let data: Value = serde_json::from_str(&flow.data).unwrap_or(Value::Null);
            let installation = data["installation"].as_str().and_then(unhex);
            // The risk engine sees every device binding; a block refuses it (the proof is
            // spent all the same).
            if let Some(refused) = decide_binding(c, &st, customer, installation.as_deref(), now)? {
                return Ok(Some(Err(refused)));
            }
            let name = device_label(data["device_name"].as_str().map(str::to_string));
            let binding = Binding {
                name: &name,
                bound_by: &factor.method,
                installation: installation.as_deref(),
            };
            let out = bind_device_and_open_session(c, &secret, &cfg, &customer.id, binding, now)?;
            super::security_event(
                c,
                &customer.id,
                "device.bound",
                &customer.id,
                &json!({"customer_id": customer.id, "device_id": out["device"]["id"], "factor": factor.method}),
                now,
            )?;
            Ok(Some(Ok(out)))
        },
        move |c| {
            identity::flow_failed(c, &h2)?;
            throttle::hit(c, &limits, now)?;
            match &subjects {
                Some(s) => s.record_failure(c, now, window),
                None => Ok(()),
            }
        },
    )
    .await?;
    state.wake_dispatcher();
    out.ok_or_else(invalid_code)?
}

/// Re-authenticates on the current (bound) device with the password — the device is the
/// second factor — for the sensitive actions that need a recent authentication. The session
/// token is replaced by a new one.
pub async fn reauthenticate(
    state: &AppState,
    auth: &crate::extract::CustomerAuth,
    password: &str,
    client_ip: IpAddr,
) -> ApiResult<Value> {
    let customer = confirm_password(state, &auth.customer_id, password, client_ip)
        .await
        .map_err(|e| e.with_param("password"))?;
    let cfg = state.config.clone();
    let now = state.now_ms();
    let (old, device_id) = (auth.token_hash.clone(), auth.device_id.clone());
    let (token, expires) = state
        .db
        .write(move |c| {
            customers::revoke_session(c, &old, now)?;
            open_session(c, &cfg, &customer.id, &device_id, now)
        })
        .await?;
    Ok(json!({"token": token, "expires_at_ms": expires, "authenticated_at_ms": now}))
}

/// Checks a signed-in customer's password (re-authentication, password change) under the
/// same throttles as a log-in from a new device — including the per-account ones, so a
/// stolen session cannot be used to guess the password.
pub async fn confirm_password(
    state: &AppState,
    customer_id: &str,
    password: &str,
    client_ip: IpAddr,
) -> ApiResult<Customer> {
    let cid = customer_id.to_string();
    let customer = state
        .db
        .read(move |c| customers::by_id(c, &cid))
        .await?
        .ok_or_else(ApiError::unauthenticated)?;
    let subjects = LoginSubjects::new(state, &customer.email, client_ip);
    login_throttled(state, &subjects, false).await?;
    if !password_matches_async(password, &customer.password_hash).await {
        let (now, window) = (state.now_ms(), state.config.login_window_ms);
        state
            .db
            .write(move |c| subjects.record_failure(c, now, window))
            .await?;
        return Err(ApiError::invalid_credentials());
    }
    Ok(customer)
}

/// Opens a session on a device: a new random token, stored as its hash.
fn open_session(
    c: &mut dyn Conn,
    cfg: &crate::config::Config,
    customer_id: &str,
    device_id: &str,
    now: i64,
) -> Result<(String, i64), StoreError> {
    let token = new_token("ks");
    let expires = now + cfg.session_absolute_ms;
    customers::insert_session(c, &token_hash(&token), customer_id, device_id, now, expires)?;
    Ok((token, expires))
}

fn session_body(token: &str, customer_id: &str, expires: i64, device: Value, now: i64) -> Value {
    json!({
        "status": "signed_in",
        "token": token,
        "customer_id": customer_id,
        "expires_at_ms": expires,
        "device": device,
        "server_time_ms": now,
    })
}

/// Binds a new device (its secret and payment-code key are returned, once) and opens a
/// session on it.
/// The device being bound: its label, the proof that bound it, and the app installation
/// (keyed fingerprint) it came from when the app said.
struct Binding<'a> {
    name: &'a str,
    bound_by: &'a str,
    installation: Option<&'a [u8]>,
}

fn bind_device_and_open_session(
    c: &mut dyn Conn,
    secret: &crate::secrets::MasterSecret,
    cfg: &crate::config::Config,
    customer_id: &str,
    binding: Binding<'_>,
    now: i64,
) -> Result<Value, StoreError> {
    let (d, device_secret) = bind_new_device(c, customer_id, binding.name, binding.bound_by, now)?;
    if let Some(i) = binding.installation {
        customers::set_installation(c, &d.id, i)?;
    }
    let slot = u32::try_from(d.slot).unwrap_or(0);
    let key = secret.paycode_key(slot, u32::try_from(d.key_generation).unwrap_or(1));
    let device = json!({
        "id": d.id,
        "new": true,
        "secret": device_secret,
        "payment_code": {"slot": d.slot, "key": hex(&key), "algorithm": "konbini-paycode-v1", "step_seconds": 30}
    });
    let (token, expires) = open_session(c, cfg, customer_id, &d.id, now)?;
    Ok(session_body(&token, customer_id, expires, device, now))
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
    bound_by: &str,
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
        if customers::insert_device(c, &d, bound_by)? {
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

/// The customer's live sessions. A session's id is a prefix of its token's hash (never the
/// token), enough to revoke it.
pub async fn list_sessions(
    state: &AppState,
    customer_id: String,
    current: Vec<u8>,
) -> ApiResult<Value> {
    let now = state.now_ms();
    let idle = state.config.session_idle_ms;
    let sessions = state
        .db
        .read(move |c| customers::sessions_of(c, &customer_id, now))
        .await?;
    Ok(json!({
        "data": sessions.iter().filter(|s| now < s.last_seen_ms + idle).map(|s| json!({
            "id": format!("sess_{}", hex(&s.token_hash[..16])),
            "device_id": s.device_id,
            "created_ms": s.created_ms,
            "last_seen_ms": s.last_seen_ms,
            "current": s.token_hash == current,
        })).collect::<Vec<_>>()
    }))
}

/// Revokes one of the customer's sessions by its listed id.
pub async fn revoke_session(state: &AppState, customer_id: String, id: &str) -> ApiResult<()> {
    let prefix = id
        .strip_prefix("sess_")
        .and_then(konbini_core::encoding::unhex)
        .filter(|p| p.len() == 16)
        .ok_or_else(|| ApiError::not_found("session"))?;
    let now = state.now_ms();
    state
        .db
        .write(move |c| {
            let live = customers::sessions_of(c, &customer_id, now)?;
            let Some(s) = live.into_iter().find(|s| s.token_hash.starts_with(&prefix)) else {
                return Err(ApiError::not_found("session"));
            };
            identity::revoke_session_of(c, &customer_id, &s.token_hash, now)?;
            Ok(())
        })
        .await
}

pub async fn list_devices(
    state: &AppState,
    customer_id: String,
    current: String,
) -> ApiResult<Value> {
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
