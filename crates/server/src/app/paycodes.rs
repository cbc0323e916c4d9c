//! Online issuance of payment codes (the same codes a phone can make offline).

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use konbini_core::paycode::{self, STEP_SECONDS};
use konbini_store::customers;
use serde_json::json;

/// Issues the device's next payment code: the current step's lowest sub-index above the last
/// one used, rendered as Code 128 and QR.
pub async fn issue(state: &AppState, device_id: String) -> ApiResult<serde_json::Value> {
    let device = state
        .db
        .read(move |c| customers::device_by_id(c, &device_id))
        .await?
        .filter(|d| d.status == "bound")
        .ok_or_else(ApiError::unauthenticated)?;
    let now = state.now_ms();
    let step = paycode::step_of(now);
    let first_of_step = paycode::counter(step, 0);
    let sub_index = if device.last_code_counter < first_of_step {
        0
    } else {
        device.last_code_counter - first_of_step + 1
    };
    let step_ms = STEP_SECONDS * 1000;
    if sub_index > 9 {
        let wait_s = ((step + 1) * step_ms - now).max(1000) / 1000;
        return Err(ApiError {
            retry_after_s: Some(wait_s as u64),
            ..ApiError {
                status: axum::http::StatusCode::TOO_MANY_REQUESTS,
                kind: "rate_limit_error",
                code: "payment_code_limit",
                message: "Ten codes were used in the last 30 seconds; wait for the next one."
                    .into(),
                param: None,
                retry_after_s: None,
            }
        });
    }
    let slot = u32::try_from(device.slot).map_err(|_| ApiError::internal())?;
    let generation = u32::try_from(device.key_generation).map_err(|_| ApiError::internal())?;
    let key = state.secret.paycode_key(slot, generation);
    let code = paycode::generate(&key, slot, step, sub_index as u8).to_string();
    Ok(json!({
        "code": code,
        "expires_at_ms": (step + 2) * step_ms,
        "refresh_at_ms": (step + 1) * step_ms,
        "barcode_svg": crate::render::code128_svg(&code),
        "qr_svg": crate::render::qr_svg(&code),
    }))
}
