//! Operator staff: accounts with a role, a password AND a mandatory TOTP second factor, and
//! short-lived sessions (15 minutes idle by default) — ready for the admin console.

use crate::error::{ApiError, ApiResult};
use crate::secrets::{MasterSecret, new_id, new_token, random_bytes, token_hash};
use crate::state::AppState;
use konbini_core::totp;
use konbini_store::staff::{self, Staff};
use konbini_store::{Db, StoreError};
use serde_json::json;

/// The staff roles. Permissions per role come with the admin API.
pub const ROLES: [&str; 5] = ["support", "analyst", "security", "finance", "admin"];

/// What `konbini staff add` prints, once.
#[derive(Debug, Clone)]
pub struct NewStaff {
    pub id: String,
    /// A generated password (24 characters), to be changed by the staff member later.
    pub password: String,
    /// The `otpauth://` URI to enrol in an authenticator app.
    pub totp_uri: String,
}

/// Creates a staff member with a generated password and an enrolled TOTP factor.
pub fn create(
    db: &Db,
    secret: &MasterSecret,
    email: &str,
    name: &str,
    role: &str,
    now_ms: i64,
) -> Result<NewStaff, String> {
    if !ROLES.contains(&role) {
        return Err(format!(
            "unknown role '{role}': use one of {}",
            ROLES.join(", ")
        ));
    }
    let email = super::accounts::normalize_email(email).map_err(|e| e.message)?;
    let password = konbini_core::encoding::base32(&random_bytes::<15>()).to_lowercase();
    let password_hash = super::accounts::hash_password(&password).map_err(|e| e.message)?;
    let row = Staff {
        id: new_id("stf"),
        email: email.clone(),
        name: name.chars().filter(|c| !c.is_control()).take(64).collect(),
        role: role.to_string(),
        password_hash,
        totp_generation: 1,
        totp_last_step: 0,
        status: "active".into(),
        created_ms: now_ms,
    };
    let id = row.id.clone();
    let inserted = db
        .write_blocking(move |c| {
            let ok = staff::insert(c, &row)?;
            if ok {
                let details = format!("{{\"role\":{:?}}}", row.role);
                konbini_store::audit::append(c, "cli", "staff.added", &row.id, &details, now_ms)?;
            }
            Ok::<_, StoreError>(ok)
        })
        .map_err(|e| e.to_string())?;
    if !inserted {
        return Err(format!("a staff member with email {email} already exists"));
    }
    let totp_uri =
        totp::provisioning_uri(&secret.staff_totp_secret(&id, 1), &email, "Konbini Staff");
    Ok(NewStaff {
        id,
        password,
        totp_uri,
    })
}

/// Staff login: email, password and the current TOTP code, all three or nothing (one error
/// for every failure, and a dummy hash check when the email is unknown).
pub async fn log_in(
    state: &AppState,
    email: &str,
    password: &str,
    code: &str,
) -> ApiResult<serde_json::Value> {
    let email =
        super::accounts::normalize_email(email).map_err(|_| ApiError::invalid_credentials())?;
    let found = state.db.read(move |c| staff::by_email(c, &email)).await?;
    let hash = found.as_ref().map_or_else(
        || state.dummy_password_hash.as_str().to_string(),
        |s| s.password_hash.clone(),
    );
    let pw = password.to_string();
    let password_ok =
        tokio::task::spawn_blocking(move || super::accounts::password_matches(&pw, &hash))
            .await
            .unwrap_or(false);
    let member = match (password_ok, found) {
        (true, Some(s)) if s.status == "active" => s,
        _ => return Err(ApiError::invalid_credentials()),
    };
    let now = state.now_ms();
    let generation = u32::try_from(member.totp_generation).unwrap_or(0);
    let secret = state.secret.staff_totp_secret(&member.id, generation);
    let Some(step) = totp::verify(&secret, code, now, member.totp_last_step) else {
        return Err(ApiError::invalid_credentials());
    };
    let token = new_token("kst");
    let hash = token_hash(&token);
    let expires = now + state.config.staff_absolute_ms;
    let id = member.id.clone();
    state
        .db
        .write(move |c| {
            // The step is spent atomically: a replayed code loses even against a racing login.
            if !staff::use_totp_step(c, &id, step)? {
                return Err(ApiError::invalid_credentials());
            }
            staff::insert_session(c, &hash, &id, now, expires)?;
            konbini_store::audit::append(c, &id, "staff.logged_in", &id, "{}", now)?;
            Ok(())
        })
        .await?;
    Ok(
        json!({"token": token, "staff_id": member.id, "role": member.role, "expires_at_ms": expires, "idle_timeout_ms": state.config.staff_idle_ms}),
    )
}

/// An authenticated staff session (`Authorization: Bearer kst_…`).
#[derive(Debug, Clone)]
pub struct StaffAuth {
    pub staff_id: String,
    pub role: String,
    pub token_hash: Vec<u8>,
}

impl axum::extract::FromRequestParts<AppState> for StaffAuth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .filter(|t| {
                t.starts_with("kst_")
                    && t.len() <= 128
                    && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
            .ok_or_else(ApiError::unauthenticated)?;
        let hash = token_hash(token);
        let h = hash.clone();
        let s = state
            .db
            .read(move |c| staff::session(c, &h))
            .await?
            .ok_or_else(ApiError::unauthenticated)?;
        let now = state.now_ms();
        if s.revoked
            || now >= s.expires_ms
            || now >= s.last_seen_ms + state.config.staff_idle_ms
            || s.staff.status != "active"
        {
            return Err(ApiError::unauthenticated());
        }
        let h = hash.clone();
        state
            .db
            .write(move |c| staff::touch_session(c, &h, now))
            .await?;
        Ok(StaffAuth {
            staff_id: s.staff.id,
            role: s.staff.role,
            token_hash: hash,
        })
    }
}

pub async fn log_out(state: &AppState, auth: StaffAuth) -> ApiResult<()> {
    let now = state.now_ms();
    state
        .db
        .write(move |c| {
            staff::revoke_session(c, &auth.token_hash, now)?;
            konbini_store::audit::append(
                c,
                &auth.staff_id,
                "staff.logged_out",
                &auth.staff_id,
                "{}",
                now,
            )?;
            Ok::<_, ApiError>(())
        })
        .await
}
