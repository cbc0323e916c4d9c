//! Finishes card operations cut off between their two transactions — by a crash, a restart or
//! an answer lost on the network — so that no money stays half-moved.
//!
//! A top-up or card-funded payment writes a `card_ops` marker with its first transaction and
//! removes it with its second. A marker older than `card_op_stuck_after_ms` means the second
//! never ran. The processor is asked what happened, by our id (its idempotency reference):
//! an approved authorization is captured (idempotent) and the operation settled as the live
//! request would have; a decline, or an authorization the processor never saw, is recorded as
//! failed. Whichever of the live request and the reconciler settles first wins; the other
//! finds the marker gone and changes nothing.

use super::funding::{decline_error, processor_down, settle_topup};
use super::pos::settle_card_payment;
use crate::error::{ApiError, ApiResult};
use crate::processor::{AuthOutcome, ProcessorError};
use crate::state::AppState;
use konbini_store::payments;

/// Operations looked at per run (a bound on the work of one sweep).
const BATCH: i64 = 50;

/// One sweep; returns how many operations it finished.
pub async fn run_once(state: &AppState) -> ApiResult<usize> {
    let before = state.now_ms() - state.config.card_op_stuck_after_ms;
    let stuck = state
        .db
        .read(move |c| payments::stuck_card_ops(c, before, BATCH))
        .await?;
    let mut finished = 0;
    for op in stuck {
        if op.kind == "refund" {
            if retry_refund(state, &op).await? {
                finished += 1;
            }
            continue;
        }
        let id = op.ref_id.clone();
        let kind = op.kind.clone();
        let amount = state
            .db
            .read(move |c| {
                Ok::<_, ApiError>(match kind.as_str() {
                    "topup" => payments::topup_by_id(c, &id)?.map(|t| t.amount),
                    _ => payments::payment_by_id(c, &id)?.map(|p| p.amount),
                })
            })
            .await?;
        let Some(amount) = amount else { continue };
        let outcome = match state.processor.lookup(&op.ref_id).await {
            // The processor is unreachable: try again on the next sweep.
            Err(e) => {
                tracing::warn!(error = %e, "reconciler: processor lookup failed");
                continue;
            }
            Ok(None) => Err(processor_down(&ProcessorError::Unavailable(
                "the processor never received the authorization".into(),
            ))),
            Ok(Some(AuthOutcome::Declined { code })) => Err(decline_error(code)),
            Ok(Some(AuthOutcome::Approved { authorization_id })) => {
                match state.processor.capture(&authorization_id, amount).await {
                    Ok(()) => Ok(authorization_id),
                    Err(ProcessorError::Rejected(_)) => {
                        // Voided or otherwise not capturable: nothing was charged.
                        Err(processor_down(&ProcessorError::Rejected(
                            "not capturable".into(),
                        )))
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "reconciler: capture failed; will retry");
                        continue;
                    }
                }
            }
        };
        let now = state.now_ms();
        let (id, kind) = (op.ref_id.clone(), op.kind.clone());
        let settled = state
            .db
            .write(move |c| match kind.as_str() {
                "topup" => settle_topup(c, &id, &outcome, now),
                _ => settle_card_payment(c, &id, &outcome, now),
            })
            .await?;
        if settled.is_some() {
            tracing::info!(reference = %op.ref_id, kind = %op.kind, "reconciler finished a card operation");
            finished += 1;
        }
    }
    Ok(finished)
}

/// Retries a card refund the processor has not confirmed. The ledger already shows the money
/// going back (store → card clearing); the processor deduplicates by reference, so a retry
/// never refunds twice. A refund the processor refuses outright is handed to operations.
async fn retry_refund(state: &AppState, op: &payments::CardOp) -> ApiResult<bool> {
    let (Some(auth), Some(amount)) = (op.processor_auth.clone(), op.amount) else {
        return Ok(false);
    };
    let now = state.now_ms();
    match state.processor.refund(&auth, amount, &op.ref_id).await {
        Ok(()) => {}
        Err(ProcessorError::Rejected(reason)) => {
            tracing::error!(refund = %op.ref_id, %reason, "the processor refused a card refund; operations must settle it");
            let (id, reason) = (op.ref_id.clone(), reason.clone());
            state
                .db
                .write(move |c| {
                    if payments::take_card_op(c, &id)?.is_some() {
                        super::emit(
                            c,
                            "card_refund.failed",
                            &id,
                            &serde_json::json!({"refund": id, "reason": reason}),
                            now,
                        )?;
                    }
                    Ok::<_, ApiError>(())
                })
                .await?;
            return Ok(false);
        }
        Err(e) => {
            tracing::warn!(error = %e, refund = %op.ref_id, "card refund still unconfirmed; will retry");
            return Ok(false);
        }
    }
    let id = op.ref_id.clone();
    let taken = state
        .db
        .write(move |c| payments::take_card_op(c, &id))
        .await?;
    Ok(taken.is_some())
}
