//! Routes and thin handlers: parse, authenticate, call a use case, answer.

use crate::app::admin::{self, Permission};
use crate::app::staff::StaffAuth;
use crate::app::{
    accounts, contacts, funding, idem::Stored, mfa, passkeys, paycodes, pos, recovery,
};
use crate::error::{ApiError, ApiResult};
use crate::extract::{CustomerAuth, IdempotencyKey, Json, Path, TerminalAuth, TerminalKey};
use crate::processor::CardDetails;
use crate::state::AppState;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde_json::Value;

/// The whole HTTP API.
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(crate::telemetry::metrics))
        .route(
            "/docs",
            get(|| async { Html(include_str!("../assets/docs.html")) }),
        )
        // The pages the links in security emails open (the token stays in the URL fragment,
        // which browsers never send to the server).
        .route(
            "/recover",
            get(|| async { Html(include_str!("../assets/recover.html")) }),
        )
        .route(
            "/revert",
            get(|| async { Html(include_str!("../assets/revert.html")) }),
        )
        .route("/v1/signup", post(sign_up))
        .route("/v1/signup/verify", post(verify_sign_up))
        .route("/v1/signup/resend", post(resend_sign_up))
        .route("/v1/sessions", post(log_in).get(list_sessions))
        .route("/v1/sessions/second-factor", post(complete_log_in))
        .route("/v1/sessions/second-factor/sms", post(send_login_sms))
        .route(
            "/v1/sessions/second-factor/passkey",
            post(begin_passkey_log_in),
        )
        .route("/v1/sessions/current", delete(log_out))
        .route("/v1/sessions/current/reauthenticate", post(reauthenticate))
        .route("/v1/sessions/{id}", delete(revoke_session))
        .route("/v1/password", put(change_password))
        .route("/v1/mfa", get(mfa_status))
        .route("/v1/mfa/totp", post(begin_totp))
        .route("/v1/mfa/totp/confirm", post(confirm_totp))
        .route("/v1/mfa/totp/disable", post(disable_totp))
        .route("/v1/mfa/recovery-codes", post(new_recovery_codes))
        .route("/v1/mfa/sms", post(send_step_up_sms))
        .route("/v1/mfa/passkeys", post(begin_passkey).get(list_passkeys))
        .route("/v1/mfa/passkeys/finish", post(finish_passkey))
        .route("/v1/mfa/passkeys/{id}/remove", post(remove_passkey))
        .route("/v1/recovery", post(request_recovery))
        .route("/v1/recovery/complete", post(complete_recovery))
        .route("/v1/recovery/passkey", post(begin_recovery_passkey))
        .route("/v1/contact-changes", post(begin_contact_change))
        .route("/v1/contact-changes/verify", post(verify_contact_change))
        .route("/v1/contact-changes/revert", post(revert_contact_change))
        .route("/v1/devices", get(list_devices))
        .route("/v1/devices/{id}", delete(revoke_device))
        .route("/v1/cards", post(link_card).get(list_cards))
        .route("/v1/cards/{id}", delete(remove_card))
        .route("/v1/wallet", get(wallet))
        .route("/v1/wallet/funding", put(set_funding))
        .route("/v1/topups", post(top_up))
        .route("/v1/transactions", get(transactions))
        .route("/v1/payment-codes", post(issue_code))
        .route("/v1/payments/pending", get(pending_payments))
        .route("/v1/payments/{id}/confirm", post(confirm_payment))
        .route("/v1/payments/{id}/reject", post(reject_payment))
        .route("/v1/admin/sessions", post(staff_log_in))
        .route("/v1/admin/sessions/current", delete(staff_log_out))
        .route("/v1/admin/me", get(staff_me))
        .route(
            "/v1/admin/risk/rules",
            get(list_risk_rules).post(create_risk_rule),
        )
        .route(
            "/v1/admin/risk/rules/{name}",
            get(get_risk_rule).put(edit_risk_rule),
        )
        .route("/v1/admin/risk/rules/{name}/enable", post(enable_risk_rule))
        .route(
            "/v1/admin/risk/rules/{name}/disable",
            post(disable_risk_rule),
        )
        .route("/v1/admin/risk/backtest", post(backtest_risk_rule))
        .route("/v1/admin/risk/cases", get(list_risk_cases))
        .route("/v1/admin/risk/cases/{id}", get(get_risk_case))
        .route("/v1/admin/risk/cases/{id}/assign", post(assign_risk_case))
        .route("/v1/admin/risk/cases/{id}/resolve", post(resolve_risk_case))
        .route("/v1/admin/customers/{id}/freeze", post(freeze_customer))
        .route("/v1/admin/customers/{id}/unfreeze", post(unfreeze_customer))
        .route("/v1/pos/payments", post(create_payment))
        .route("/v1/pos/payments/{id}", get(get_payment))
        .route("/v1/pos/payments/{id}/cancel", post(cancel_payment))
        .route("/v1/pos/payments/{id}/refunds", post(refund_payment))
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::telemetry::observe,
        ))
        .with_state(state)
}

async fn ready(State(s): State<AppState>) -> Response {
    let ok: Result<i64, ApiError> =
        s.db.read(|c| Ok(c.query_one("SELECT 1", konbini_store::params![])?.int(0)?))
            .await;
    match ok {
        Ok(_) => "ready".into_response(),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response(),
    }
}

async fn openapi() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        include_str!("../assets/openapi.json"),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignUp {
    email: String,
    phone: String,
    password: String,
}

/// The TCP peer's address (throttling keys); no proxy header is trusted.
type Peer = axum::extract::ConnectInfo<std::net::SocketAddr>;

async fn sign_up(
    State(s): State<AppState>,
    axum::extract::ConnectInfo(peer): Peer,
    Json(b): Json<SignUp>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let out = accounts::sign_up(&s, &b.email, &b.phone, &b.password, peer.ip()).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(out)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifySignUp {
    signup_id: String,
    email_code: String,
    phone_code: String,
    device_name: Option<String>,
    installation_id: Option<String>,
}

/// The device a sign-up or sign-in is about to bind, with its installation id checked.
fn new_device(
    name: Option<String>,
    installation_id: Option<String>,
) -> ApiResult<accounts::NewDevice> {
    if let Some(id) = &installation_id
        && !accounts::valid_installation_id(id)
    {
        return Err(ApiError::invalid_param(
            "invalid_installation_id",
            "installation_id",
            "installation_id must be 16 to 128 characters of A-Z, a-z, 0-9, '-' and '_'.",
        ));
    }
    Ok(accounts::NewDevice {
        name,
        installation: installation_id,
    })
}

async fn verify_sign_up(
    State(s): State<AppState>,
    axum::extract::ConnectInfo(peer): Peer,
    Json(b): Json<VerifySignUp>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let out = accounts::verify_sign_up(
        &s,
        &b.signup_id,
        &b.email_code,
        &b.phone_code,
        new_device(b.device_name, b.installation_id)?,
        peer.ip(),
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(out)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignUpHandle {
    signup_id: String,
}

async fn resend_sign_up(
    State(s): State<AppState>,
    Json(b): Json<SignUpHandle>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let out = accounts::resend_sign_up(&s, &b.signup_id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(out)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecondFactor {
    challenge: String,
    method: String,
    #[serde(default)]
    code: String,
    credential: Option<Value>,
}

async fn complete_log_in(
    State(s): State<AppState>,
    axum::extract::ConnectInfo(peer): Peer,
    Json(b): Json<SecondFactor>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let factor = crate::app::codes::Factor {
        method: b.method,
        code: b.code,
        credential: b.credential,
    };
    let out = accounts::complete_log_in(&s, &b.challenge, factor, peer.ip()).await?;
    Ok((StatusCode::CREATED, axum::Json(out)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Challenge {
    challenge: String,
}

async fn send_login_sms(
    State(s): State<AppState>,
    Json(b): Json<Challenge>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let out = accounts::send_login_sms(&s, &b.challenge).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(out)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Password {
    password: String,
}

async fn reauthenticate(
    State(s): State<AppState>,
    axum::extract::ConnectInfo(peer): Peer,
    auth: CustomerAuth,
    Json(b): Json<Password>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let out = accounts::reauthenticate(&s, &auth, &b.password, peer.ip()).await?;
    Ok((StatusCode::CREATED, axum::Json(out)))
}

async fn list_sessions(
    State(s): State<AppState>,
    auth: CustomerAuth,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(
        accounts::list_sessions(&s, auth.customer_id, auth.token_hash).await?,
    ))
}

async fn revoke_session(
    State(s): State<AppState>,
    auth: CustomerAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    accounts::revoke_session(&s, auth.customer_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangePassword {
    current_password: String,
    new_password: String,
}

async fn change_password(
    State(s): State<AppState>,
    axum::extract::ConnectInfo(peer): Peer,
    auth: CustomerAuth,
    Json(b): Json<ChangePassword>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(
        mfa::change_password(&s, &auth, &b.current_password, &b.new_password, peer.ip()).await?,
    ))
}

async fn mfa_status(State(s): State<AppState>, auth: CustomerAuth) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(mfa::status(&s, &auth).await?))
}

async fn begin_totp(State(s): State<AppState>, auth: CustomerAuth) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(mfa::begin_totp(&s, &auth).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Code {
    code: String,
}

async fn confirm_totp(
    State(s): State<AppState>,
    auth: CustomerAuth,
    Json(b): Json<Code>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(mfa::confirm_totp(&s, &auth, &b.code).await?))
}

async fn disable_totp(
    State(s): State<AppState>,
    auth: CustomerAuth,
    Json(b): Json<crate::app::codes::Factor>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(mfa::disable_totp(&s, &auth, b).await?))
}

async fn new_recovery_codes(
    State(s): State<AppState>,
    auth: CustomerAuth,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(mfa::new_recovery_codes(&s, &auth).await?))
}

async fn send_step_up_sms(
    State(s): State<AppState>,
    auth: CustomerAuth,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let out = mfa::send_step_up_sms(&s, &auth).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(out)))
}

async fn begin_passkey_log_in(
    State(s): State<AppState>,
    Json(b): Json<Challenge>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(
        accounts::begin_passkey_log_in(&s, &b.challenge).await?,
    ))
}

async fn begin_passkey(
    State(s): State<AppState>,
    auth: CustomerAuth,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(passkeys::begin_registration(&s, &auth).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FinishPasskey {
    registration_id: String,
    credential: Value,
    name: Option<String>,
}

async fn finish_passkey(
    State(s): State<AppState>,
    auth: CustomerAuth,
    Json(b): Json<FinishPasskey>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let out =
        passkeys::finish_registration(&s, &auth, &b.registration_id, b.credential, b.name).await?;
    Ok((StatusCode::CREATED, axum::Json(out)))
}

async fn list_passkeys(
    State(s): State<AppState>,
    auth: CustomerAuth,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(passkeys::list(&s, &auth).await?))
}

async fn remove_passkey(
    State(s): State<AppState>,
    auth: CustomerAuth,
    Path(id): Path<String>,
    Json(factor): Json<crate::app::codes::Factor>,
) -> ApiResult<StatusCode> {
    passkeys::remove(&s, &auth, id, factor).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoveryPasskey {
    recovery_id: String,
    email_token: Option<String>,
    sms_code: Option<String>,
}

async fn begin_recovery_passkey(
    State(s): State<AppState>,
    axum::extract::ConnectInfo(peer): Peer,
    Json(b): Json<RecoveryPasskey>,
) -> ApiResult<axum::Json<Value>> {
    let out = recovery::begin_passkey(
        &s,
        &b.recovery_id,
        b.email_token.as_deref(),
        b.sms_code.as_deref(),
        peer.ip(),
    )
    .await?;
    Ok(axum::Json(out))
}

/// The recovery request: an identifier and nothing else (any other field is refused).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoveryRequest {
    identifier: String,
}

async fn request_recovery(
    State(s): State<AppState>,
    axum::extract::ConnectInfo(peer): Peer,
    Json(b): Json<RecoveryRequest>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let out = recovery::request(&s, &b.identifier, peer.ip()).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(out)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteRecovery {
    recovery_id: Option<String>,
    new_password: String,
    #[serde(flatten)]
    proofs: recovery::Proofs,
}

async fn complete_recovery(
    State(s): State<AppState>,
    axum::extract::ConnectInfo(peer): Peer,
    Json(b): Json<CompleteRecovery>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(
        recovery::complete(
            &s,
            b.recovery_id.as_deref(),
            b.proofs,
            &b.new_password,
            peer.ip(),
        )
        .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactChange {
    kind: String,
    value: String,
    factor: crate::app::codes::Factor,
}

async fn begin_contact_change(
    State(s): State<AppState>,
    auth: CustomerAuth,
    Json(b): Json<ContactChange>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let out = contacts::begin(&s, &auth, &b.kind, &b.value, b.factor).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(out)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyContactChange {
    change_id: String,
    code: String,
}

async fn verify_contact_change(
    State(s): State<AppState>,
    auth: CustomerAuth,
    Json(b): Json<VerifyContactChange>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(
        contacts::verify(&s, &auth, &b.change_id, &b.code).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevertContactChange {
    token: String,
}

async fn revert_contact_change(
    State(s): State<AppState>,
    axum::extract::ConnectInfo(peer): Peer,
    Json(b): Json<RevertContactChange>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(contacts::revert(&s, &b.token, peer.ip()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogIn {
    email: String,
    password: String,
    device: Option<accounts::DeviceCredential>,
    device_name: Option<String>,
    installation_id: Option<String>,
}

async fn log_in(
    State(s): State<AppState>,
    axum::extract::ConnectInfo(peer): Peer,
    Json(b): Json<LogIn>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let (signed_in, out) = accounts::log_in(
        &s,
        &b.email,
        &b.password,
        b.device,
        new_device(b.device_name, b.installation_id)?,
        peer.ip(),
    )
    .await?;
    // 201: a session was opened; 202: a second factor (or verification) must follow.
    let status = if signed_in {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, axum::Json(out)))
}

async fn log_out(State(s): State<AppState>, auth: CustomerAuth) -> ApiResult<StatusCode> {
    accounts::log_out(&s, auth.token_hash).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_devices(
    State(s): State<AppState>,
    auth: CustomerAuth,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(
        accounts::list_devices(&s, auth.customer_id, auth.device_id).await?,
    ))
}

async fn revoke_device(
    State(s): State<AppState>,
    auth: CustomerAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    accounts::revoke_device(&s, auth.customer_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn link_card(
    State(s): State<AppState>,
    auth: CustomerAuth,
    Json(card): Json<CardDetails>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(funding::link_card(&s, &auth, card).await?),
    ))
}

async fn list_cards(State(s): State<AppState>, auth: CustomerAuth) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(funding::list_cards(&s, auth.customer_id).await?))
}

async fn remove_card(
    State(s): State<AppState>,
    auth: CustomerAuth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    funding::remove_card(&s, auth.customer_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn wallet(State(s): State<AppState>, auth: CustomerAuth) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(funding::wallet(&s, auth.customer_id).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Funding {
    source: String,
    card_id: Option<String>,
}

async fn set_funding(
    State(s): State<AppState>,
    auth: CustomerAuth,
    Json(b): Json<Funding>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(
        funding::set_funding(&s, auth.customer_id, b.source, b.card_id).await?,
    ))
}

async fn top_up(
    State(s): State<AppState>,
    auth: CustomerAuth,
    key: IdempotencyKey,
    Json(b): Json<funding::TopupRequest>,
) -> ApiResult<Stored> {
    funding::top_up(&s, &auth, key.0, b).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn transactions(
    State(s): State<AppState>,
    auth: CustomerAuth,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<axum::Json<Value>> {
    let Query(q) =
        q.map_err(|_| ApiError::invalid("invalid_query", "Use ?limit=1..100&cursor=..."))?;
    Ok(axum::Json(
        funding::transactions(&s, auth.customer_id, q.limit, q.cursor).await?,
    ))
}

async fn issue_code(
    State(s): State<AppState>,
    auth: CustomerAuth,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(paycodes::issue(&s, auth.device_id).await?),
    ))
}

async fn pending_payments(
    State(s): State<AppState>,
    auth: CustomerAuth,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(
        pos::pending_for_customer(&s, auth.customer_id).await?,
    ))
}

async fn confirm_payment(
    State(s): State<AppState>,
    auth: CustomerAuth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(pos::confirm_pending(&s, &auth, id).await?))
}

async fn reject_payment(
    State(s): State<AppState>,
    auth: CustomerAuth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(
        pos::decide_pending(&s, auth.customer_id, id, false).await?,
    ))
}

async fn create_payment(
    State(s): State<AppState>,
    t: TerminalKey,
    key: IdempotencyKey,
    Json(b): Json<pos::PaymentRequest>,
) -> ApiResult<Stored> {
    // Runs to completion even if the terminal hangs up: what follows the commit (counting
    // the store and terminal in memory, asking the card processor) is not cut off half-way.
    tokio::spawn(async move { pos::create_payment(&s, t.key_hash, key.0, b).await })
        .await
        .unwrap_or_else(|_| Err(ApiError::internal()))
}

async fn get_payment(
    State(s): State<AppState>,
    t: TerminalAuth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(pos::get_payment(&s, t.store_id, id).await?))
}

async fn cancel_payment(
    State(s): State<AppState>,
    t: TerminalAuth,
    key: IdempotencyKey,
    Path(id): Path<String>,
) -> ApiResult<Stored> {
    pos::cancel(&s, t.terminal_id, t.store_id, id, key.0).await
}

async fn refund_payment(
    State(s): State<AppState>,
    t: TerminalAuth,
    key: IdempotencyKey,
    Path(id): Path<String>,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Stored> {
    // Read by hand (the body is optional), so its rejections get our error object too.
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                ..ApiError::invalid("body_too_large", "The request body is too large.")
            }
        } else {
            ApiError::invalid("invalid_request", "The request body could not be read.")
        }
    })?;
    // The body is optional: no body refunds whatever remains.
    let req = if body.iter().all(u8::is_ascii_whitespace) {
        pos::RefundRequest { amount: None }
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::invalid(
                "invalid_request",
                crate::extract::redact_digits(&e.to_string()),
            )
        })?
    };
    pos::refund(&s, t.terminal_id, t.store_id, id, key.0, req).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StaffLogIn {
    email: String,
    password: String,
    totp: String,
}

async fn staff_log_in(
    State(s): State<AppState>,
    Json(b): Json<StaffLogIn>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    let out = crate::app::staff::log_in(&s, &b.email, &b.password, &b.totp).await?;
    Ok((StatusCode::CREATED, axum::Json(out)))
}

async fn staff_log_out(
    State(s): State<AppState>,
    auth: crate::app::staff::StaffAuth,
) -> ApiResult<StatusCode> {
    crate::app::staff::log_out(&s, auth).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn staff_me(auth: crate::app::staff::StaffAuth) -> axum::Json<Value> {
    axum::Json(serde_json::json!({"staff_id": auth.staff_id, "role": auth.role}))
}

// Admin API for risk. The role is checked before the body is read, so a staff member
// without the permission learns nothing from the validation of a request.

async fn list_risk_rules(
    State(s): State<AppState>,
    auth: StaffAuth,
) -> ApiResult<axum::Json<Value>> {
    admin::require(&auth, Permission::ReadRules)?;
    Ok(axum::Json(admin::list_rules(&s).await?))
}

async fn get_risk_rule(
    State(s): State<AppState>,
    auth: StaffAuth,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    admin::require(&auth, Permission::ReadRules)?;
    Ok(axum::Json(admin::get_rule(&s, name).await?))
}

async fn create_risk_rule(
    State(s): State<AppState>,
    auth: StaffAuth,
    body: Result<Json<admin::NewRule>, ApiError>,
) -> ApiResult<(StatusCode, axum::Json<Value>)> {
    admin::require(&auth, Permission::WriteRules)?;
    let Json(b) = body?;
    let out = admin::create_rule(&s, &auth.staff_id, b).await?;
    Ok((StatusCode::CREATED, axum::Json(out)))
}

async fn edit_risk_rule(
    State(s): State<AppState>,
    auth: StaffAuth,
    Path(name): Path<String>,
    body: Result<Json<admin::RuleEdit>, ApiError>,
) -> ApiResult<axum::Json<Value>> {
    admin::require(&auth, Permission::WriteRules)?;
    let Json(b) = body?;
    Ok(axum::Json(
        admin::edit_rule(&s, &auth.staff_id, name, b).await?,
    ))
}

async fn enable_risk_rule(
    State(s): State<AppState>,
    auth: StaffAuth,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    admin::require(&auth, Permission::WriteRules)?;
    Ok(axum::Json(
        admin::set_rule_enabled(&s, &auth.staff_id, name, true).await?,
    ))
}

async fn disable_risk_rule(
    State(s): State<AppState>,
    auth: StaffAuth,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    admin::require(&auth, Permission::WriteRules)?;
    Ok(axum::Json(
        admin::set_rule_enabled(&s, &auth.staff_id, name, false).await?,
    ))
}

async fn backtest_risk_rule(
    State(s): State<AppState>,
    auth: StaffAuth,
    body: Result<Json<admin::BacktestRequest>, ApiError>,
) -> ApiResult<axum::Json<Value>> {
    admin::require(&auth, Permission::Backtest)?;
    let Json(b) = body?;
    Ok(axum::Json(admin::backtest(&s, b).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseQuery {
    status: Option<String>,
    limit: Option<i64>,
}

async fn list_risk_cases(
    State(s): State<AppState>,
    auth: StaffAuth,
    q: Result<Query<CaseQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<axum::Json<Value>> {
    admin::require(&auth, Permission::ReadCases)?;
    let Query(q) = q.map_err(|_| {
        ApiError::invalid("invalid_query", "Use ?status=open|resolved&limit=1..100")
    })?;
    Ok(axum::Json(admin::list_cases(&s, q.status, q.limit).await?))
}

async fn get_risk_case(
    State(s): State<AppState>,
    auth: StaffAuth,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    admin::require(&auth, Permission::ReadCases)?;
    Ok(axum::Json(admin::get_case(&s, id).await?))
}

async fn assign_risk_case(
    State(s): State<AppState>,
    auth: StaffAuth,
    Path(id): Path<String>,
    body: Result<Json<admin::AssignCase>, ApiError>,
) -> ApiResult<axum::Json<Value>> {
    admin::require(&auth, Permission::WorkCases)?;
    let Json(b) = body?;
    Ok(axum::Json(
        admin::assign_case(&s, &auth.staff_id, id, b).await?,
    ))
}

async fn resolve_risk_case(
    State(s): State<AppState>,
    auth: StaffAuth,
    Path(id): Path<String>,
    body: Result<Json<admin::ResolveCase>, ApiError>,
) -> ApiResult<axum::Json<Value>> {
    admin::require(&auth, Permission::WorkCases)?;
    let Json(b) = body?;
    Ok(axum::Json(
        admin::resolve_case(&s, &auth.staff_id, id, b).await?,
    ))
}

async fn freeze_customer(
    State(s): State<AppState>,
    auth: StaffAuth,
    Path(id): Path<String>,
    body: Result<Json<admin::FreezeRequest>, ApiError>,
) -> ApiResult<axum::Json<Value>> {
    admin::require(&auth, Permission::Freeze)?;
    let Json(b) = body?;
    Ok(axum::Json(admin::freeze(&s, &auth.staff_id, id, b).await?))
}

async fn unfreeze_customer(
    State(s): State<AppState>,
    auth: StaffAuth,
    Path(id): Path<String>,
    body: Result<Json<admin::FreezeRequest>, ApiError>,
) -> ApiResult<axum::Json<Value>> {
    admin::require(&auth, Permission::Freeze)?;
    let Json(b) = body?;
    Ok(axum::Json(
        admin::unfreeze(&s, &auth.staff_id, id, b).await?,
    ))
}
