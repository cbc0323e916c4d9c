//! Cards, top-ups, the wallet and the customer's history.

use super::idem::{self, Idem, Stored};
use crate::error::{ApiError, ApiResult};
use crate::extract::CustomerAuth;
use crate::processor::{AuthOutcome, CardDetails, DeclineCode, ProcessorError};
use crate::secrets::new_id;
use crate::state::AppState;
use axum::http::StatusCode;
use konbini_core::encoding::hex;
use konbini_core::ledger::{self as rules, AccountKind, Entry};
use konbini_core::risk::{EventKind, LimitKind, Outcome};
use konbini_core::{Amount, Currency};
use konbini_store::Conn;
use konbini_store::customers::{self, Card};
use konbini_store::ledger::{self, Posted};
use konbini_store::payments::{self, Activity, Topup};
use serde_json::json;

/// Japan's business day: limits reset at midnight JST (UTC+9).
const DAY_OFFSET_MS: i64 = 9 * 3600 * 1000;
const DAY_MS: i64 = 24 * 3600 * 1000;

/// Start of the business day containing `now_ms`.
pub fn day_start_ms(now_ms: i64) -> i64 {
    now_ms - (now_ms + DAY_OFFSET_MS).rem_euclid(DAY_MS)
}

/// Parses an amount in the platform currency.
pub fn parse_amount(state: &AppState, amount: i64, currency: &str) -> ApiResult<Amount> {
    let cur = Currency::parse(currency).map_err(|_| {
        ApiError::invalid_param("invalid_currency", "currency", "Unknown currency code.")
    })?;
    if cur != state.config.currency {
        return Err(ApiError::invalid_param(
            "currency_not_supported",
            "currency",
            format!("This platform handles {} only.", state.config.currency),
        ));
    }
    Amount::new(amount, cur).map_err(|e| {
        ApiError::invalid_param("invalid_amount", "amount", format!("Invalid amount: {e}."))
    })
}

fn card_json(c: &Card) -> serde_json::Value {
    json!({"id": c.id, "brand": c.brand, "last4": c.last4, "exp_month": c.exp_month, "exp_year": c.exp_year})
}

pub(crate) fn decline_error(code: DeclineCode) -> ApiError {
    let msg = match code {
        DeclineCode::CardDeclined => "The card was declined.",
        DeclineCode::InsufficientFunds => "The card has insufficient funds.",
        DeclineCode::ExpiredCard => "The card has expired.",
        DeclineCode::InvalidCard => "The card details are invalid.",
    };
    ApiError::payment(code.as_str(), msg)
}

pub(crate) fn processor_down(e: &ProcessorError) -> ApiError {
    tracing::warn!(error = %e, "card processor unavailable");
    ApiError {
        status: StatusCode::BAD_GATEWAY,
        ..ApiError::unavailable(
            "processor_unavailable",
            "The card processor did not answer; nothing was charged. Try again.",
        )
    }
}

/// Links a card: the number goes to the processor only; Konbini keeps its token, brand, last
/// four digits, expiry and a keyed fingerprint.
/// Needs a recent authentication (step-up) and, during a recovery hold, a device bound with
/// a strong factor.
pub async fn link_card(
    state: &AppState,
    auth: &CustomerAuth,
    card: CardDetails,
) -> ApiResult<serde_json::Value> {
    auth.require_recent_auth(state)?;
    auth.require_strong_during_hold(state, "linking a card")?;
    let customer_id = auth.customer_id.clone();
    let digits: String = card.number.chars().filter(char::is_ascii_digit).collect();
    let fingerprint = state.secret.card_fingerprint(&digits);
    drop(digits);
    let tokenized = match state.processor.tokenize(&card).await {
        Ok(Ok(t)) => t,
        Ok(Err(code)) => return Err(decline_error(code)),
        Err(e) => return Err(processor_down(&e)),
    };
    let now = state.now_ms();
    let row = Card {
        id: new_id("card"),
        customer_id: customer_id.clone(),
        processor_token: tokenized.token,
        brand: tokenized.brand,
        last4: tokenized.last4,
        exp_month: i64::from(tokenized.exp_month),
        exp_year: i64::from(tokenized.exp_year),
        fingerprint,
        status: "active".into(),
        created_ms: now,
    };
    let out = card_json(&row);
    let (st, device_id) = (state.clone(), auth.device_id.clone());
    let linked = state
        .db
        .write(move |c| {
            // The risk engine decides before the card is linked (one card on many accounts,
            // a brand-new account or device, the recovery hold).
            let customer =
                customers::by_id(c, &row.customer_id)?.ok_or_else(ApiError::unauthenticated)?;
            let facts = super::risk::FundingFacts {
                kind: EventKind::CardLink,
                customer_id: &row.customer_id,
                account: super::risk::AccountTimes::of(&customer),
                device_created_ms: customers::device_by_id(c, &device_id)?.map(|d| d.created_ms),
                device_accounts: customers::device_accounts(c, &device_id)?,
                card_fingerprint: &hex(&row.fingerprint),
                // Counting this account too, as if linked.
                card_accounts: customers::customers_with_fingerprint(c, &row.fingerprint)?
                    + i64::from(
                        !customers::cards_of(c, &row.customer_id)?
                            .iter()
                            .any(|k| k.fingerprint == row.fingerprint),
                    ),
                amount: None,
            };
            let (features, _) = super::risk::funding_features(c, &st, &facts, now)?;
            let decision = st.risk.evaluate(&features);
            super::risk::journal(
                c,
                &decision,
                &features,
                EventKind::CardLink,
                &row.customer_id,
                Some(&row.id),
                now,
            )?;
            if decision.outcome == Outcome::Block {
                return Ok(false);
            }
            customers::insert_card(c, &row)?;
            super::security_event(
                c,
                &row.customer_id,
                "card.linked",
                &row.id,
                &json!({"customer_id": row.customer_id, "card_id": row.id}),
                now,
            )?;
            Ok::<_, ApiError>(true)
        })
        .await?;
    if !linked {
        return Err(ApiError::payment(
            "do_not_honor",
            "This card cannot be linked to the account.",
        ));
    }
    Ok(out)
}

pub async fn list_cards(state: &AppState, customer_id: String) -> ApiResult<serde_json::Value> {
    let cards = state
        .db
        .read(move |c| customers::cards_of(c, &customer_id))
        .await?;
    Ok(json!({"data": cards.iter().map(card_json).collect::<Vec<_>>()}))
}

pub async fn remove_card(state: &AppState, customer_id: String, card_id: String) -> ApiResult<()> {
    let now = state.now_ms();
    let removed = state
        .db
        .write(move |c| {
            let removed = customers::remove_card(c, &customer_id, &card_id)?;
            if removed {
                super::security_event(
                    c,
                    &customer_id,
                    "card.removed",
                    &card_id,
                    &json!({"customer_id": customer_id, "card_id": card_id}),
                    now,
                )?;
            }
            Ok::<_, ApiError>(removed)
        })
        .await?;
    if removed {
        Ok(())
    } else {
        Err(ApiError::not_found("card"))
    }
}

/// Chooses how POS payments are funded: `wallet`, or `card` with one of the customer's cards.
pub async fn set_funding(
    state: &AppState,
    customer_id: String,
    source: String,
    card_id: Option<String>,
) -> ApiResult<serde_json::Value> {
    match (source.as_str(), &card_id) {
        ("wallet", None) | ("card", Some(_)) => {}
        _ => {
            return Err(ApiError::invalid_param(
                "invalid_funding",
                "source",
                "Use {\"source\":\"wallet\"} or {\"source\":\"card\",\"card_id\":...}.",
            ));
        }
    }
    state
        .db
        .write(move |c| {
            if let Some(id) = &card_id
                && customers::card_of(c, &customer_id, id)?.is_none()
            {
                return Err(ApiError::not_found("card").with_param("card_id"));
            }
            customers::set_funding(c, &customer_id, &source, card_id.as_deref())?;
            Ok(json!({"source": source, "card_id": card_id}))
        })
        .await
}

/// A top-up request as sent by the wallet.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopupRequest {
    pub amount: i64,
    pub currency: String,
    pub card_id: String,
}

fn topup_json(t: &Topup) -> serde_json::Value {
    json!({
        "id": t.id, "object": "topup", "status": t.status, "amount": t.amount, "currency": t.currency,
        "card_id": t.card_id, "decline_code": t.decline_code, "created_ms": t.created_ms
    })
}

enum Phase1 {
    Replay(Stored),
    Charge { topup: Box<Topup>, token: String },
}

/// Tops the wallet up from a linked card, within the limits.
///
/// Two transactions around the processor call: the first claims the idempotency key and
/// records the top-up as `pending`; the processor is asked to authorize with the top-up id as
/// its idempotency reference (so a retry after a timeout never charges twice) and then
/// capture; the second transaction credits the wallet through the ledger, or records the
/// failure. The wallet is never credited for money the processor did not confirm.
///
/// During a recovery hold a top-up needs a device bound with a strong factor; above
/// `step_up_topup_above_minor` it needs a recent authentication.
pub async fn top_up(
    state: &AppState,
    auth: &CustomerAuth,
    key: String,
    req: TopupRequest,
) -> ApiResult<Stored> {
    let customer_id = auth.customer_id.clone();
    let amount = parse_amount(state, req.amount, &req.currency)?;
    auth.require_strong_during_hold(state, "a top-up")?;
    if amount.minor() > state.config.step_up_topup_above_minor {
        auth.require_recent_auth(state)?;
    }
    let limits = state.config.limits.clone();
    if amount.minor() > limits.per_topup_minor {
        return Err(ApiError::payment(
            "topup_limit_exceeded",
            format!("A single top-up may be at most {}.", limits.per_topup_minor),
        )
        .with_param("amount"));
    }
    let idem = Idem::new(&customer_id, &key, "POST /v1/topups", &req);
    let now = state.now_ms();
    let (st, device_id) = (state.clone(), auth.device_id.clone());
    let recent = auth.require_recent_auth(state).is_ok();
    let phase1 = {
        let (idem, customer_id, card_id) = (idem.clone(), customer_id.clone(), req.card_id.clone());
        state
            .db
            .write(move |c| {
                if let Some(s) = idem::begin(c, &idem, now)? {
                    return Ok(Phase1::Replay(s));
                }
                lock_customer(c, &customer_id)?;
                let card = customers::card_of(c, &customer_id, &card_id)?
                    .ok_or_else(|| ApiError::not_found("card").with_param("card_id"))?;
                let (_, today) = payments::topups_since(c, &customer_id, day_start_ms(now))?;
                if today.saturating_add(amount.minor()) > limits.daily_topup_minor {
                    return Err(ApiError::payment(
                        "daily_topup_limit_exceeded",
                        format!("Top-ups are limited to {} a day.", limits.daily_topup_minor),
                    )
                    .with_param("amount"));
                }
                let wallet = rules::wallet_account(&customer_id, amount.currency());
                let (balance, _) = ledger::balance(c, &wallet)?;
                let pending = pending_topups(c, &customer_id)?;
                if balance
                    .saturating_add(pending)
                    .saturating_add(amount.minor())
                    > limits.max_balance_minor
                {
                    return Err(ApiError::payment(
                        "balance_limit_exceeded",
                        format!("The wallet may hold at most {}.", limits.max_balance_minor),
                    )
                    .with_param("amount"));
                }
                // The risk engine decides before anything is recorded as pending.
                let customer = customers::by_id(c, &customer_id)?
                    .ok_or_else(ApiError::unauthenticated)?;
                let device_created = customers::device_by_id(c, &device_id)?.map(|d| d.created_ms);
                let facts = super::risk::FundingFacts {
                    kind: EventKind::Topup,
                    customer_id: &customer_id,
                    account: super::risk::AccountTimes::of(&customer),
                    device_created_ms: device_created,
                    device_accounts: customers::device_accounts(c, &device_id)?,
                    card_fingerprint: &hex(&card.fingerprint),
                    card_accounts: customers::customers_with_fingerprint(c, &card.fingerprint)?,
                    amount: Some(amount.minor()),
                };
                let (features, profile) = super::risk::funding_features(c, &st, &facts, now)?;
                let tier = super::risk::tier(&st, customer.created_ms, customer.recovery_hold_until_ms, profile.payments);
                let month_start = super::risk::business_month(now).1;
                let (_, month) = payments::topups_since(c, &customer_id, month_start)?;
                super::risk::check_tier_limit(&st, tier, LimitKind::Topup, amount.minor(), (today, month))?;
                let decision = st.risk.evaluate(&features);
                if decision.outcome == Outcome::StepUp && !recent {
                    // Rolled back: the customer re-authenticates and sends the same request.
                    return Err(ApiError::forbidden(
                        "reauthentication_required",
                        "Confirm it is you: re-authenticate (POST /v1/sessions/current/reauthenticate) and send the top-up again.",
                    ));
                }
                let topup_id = new_id("top");
                super::risk::journal(c, &decision, &features, EventKind::Topup, &customer_id, Some(&topup_id), now)?;
                if decision.outcome == Outcome::Block {
                    // Recorded as failed, with a decline that does not name the rule.
                    let err = ApiError::payment("do_not_honor", "This top-up was declined.");
                    let failed = Topup {
                        id: topup_id,
                        customer_id: customer_id.clone(),
                        source: "card".into(),
                        card_id: Some(card.id.clone()),
                        store_id: None,
                        amount: amount.minor(),
                        currency: amount.currency().code().into(),
                        status: "failed".into(),
                        decline_code: Some(err.code.into()),
                        processor_auth: None,
                        created_ms: now,
                    };
                    payments::insert_topup(c, &failed)?;
                    let stored = Stored {
                        status: err.status.as_u16(),
                        body: err.body().to_string(),
                    };
                    idem::finish(c, &idem, &stored)?;
                    return Ok(Phase1::Replay(stored));
                }
                super::risk::record_topup(c, &facts, now)?;
                let topup = Topup {
                    id: topup_id,
                    customer_id: customer_id.clone(),
                    source: "card".into(),
                    card_id: Some(card.id.clone()),
                    store_id: None,
                    amount: amount.minor(),
                    currency: amount.currency().code().into(),
                    status: "pending".into(),
                    decline_code: None,
                    processor_auth: None,
                    created_ms: now,
                };
                payments::insert_topup(c, &topup)?;
                payments::insert_activity(
                    c,
                    &Activity {
                        id: topup.id.clone(),
                        customer_id: customer_id.clone(),
                        kind: "topup".into(),
                        amount: amount.minor(),
                        currency: topup.currency.clone(),
                        status: "pending".into(),
                        description: format!("Top-up from {} ****{}", card.brand, card.last4),
                        created_ms: now,
                    },
                )?;
                payments::insert_card_op(
                    c,
                    &payments::CardOp {
                        ref_id: topup.id.clone(),
                        kind: "topup".into(),
                        idem_scope: idem.scope.clone(),
                        idem_key: idem.key.clone(),
                        processor_auth: None,
                        amount: None,
                        created_ms: now,
                    },
                )?;
                Ok(Phase1::Charge {
                    topup: Box::new(topup),
                    token: card.processor_token,
                })
            })
            .await?
    };
    let (topup, token) = match phase1 {
        Phase1::Replay(s) => return Ok(s),
        Phase1::Charge { topup, token } => (*topup, token),
    };

    let outcome = charge(state, &token, amount, &topup.id).await;
    let now = state.now_ms();
    let id = topup.id.clone();
    let settled = state
        .db
        .write(move |c| settle_topup(c, &id, &outcome, now))
        .await?;
    match settled {
        Some(stored) => Ok(stored),
        // The reconciler finished it first (only after a very long stall): answer what it stored.
        None => {
            let (scope, key) = (idem.scope.clone(), idem.key.clone());
            let existing = state
                .db
                .read(move |c| konbini_store::idempotency::lookup(c, &scope, &key))
                .await?
                .ok_or_else(ApiError::internal)?;
            idem::answer_existing(existing, &idem.request_hash)
        }
    }
}

/// Second transaction of a top-up, shared by the live request and the reconciler: credits the
/// wallet when the processor captured, records the failure otherwise, and completes the
/// idempotency record. `None` when the top-up was already finished by the other party.
pub(crate) fn settle_topup(
    c: &mut dyn Conn,
    topup_id: &str,
    outcome: &Result<String, ApiError>,
    now: i64,
) -> ApiResult<Option<Stored>> {
    let Some(op) = payments::take_card_op(c, topup_id)? else {
        return Ok(None);
    };
    let mut topup = payments::topup_by_id(c, topup_id)?.ok_or_else(ApiError::internal)?;
    let currency = Currency::parse(&topup.currency).map_err(|_| ApiError::internal())?;
    let amount = Amount::new(topup.amount, currency).map_err(|_| ApiError::internal())?;
    let stored = match outcome {
        Ok(auth_id) => {
            let wallet = rules::wallet_account(&topup.customer_id, currency);
            let clearing = rules::card_clearing_account(&topup.customer_id, currency);
            ledger::ensure_account(c, &wallet, AccountKind::Wallet, currency, now)?;
            let entry =
                Entry::transfer(&clearing, &wallet, amount).map_err(|_| ApiError::internal())?;
            if ledger::post(c, &new_id("ent"), "topup", &topup.id, &entry, now)? != Posted::Ok {
                return Err(ApiError::internal());
            }
            payments::finish_topup(c, &topup.id, "succeeded", None, Some(auth_id), now)?;
            payments::set_activity_status(c, &topup.id, "succeeded")?;
            topup.status = "succeeded".into();
            super::emit(
                c,
                "topup.succeeded",
                &topup.id,
                &json!({"customer_id": topup.customer_id, "topup_id": topup.id, "amount": topup.amount, "currency": topup.currency}),
                now,
            )?;
            Stored::json(StatusCode::CREATED, &topup_json(&topup))
        }
        Err(err) => {
            payments::finish_topup(c, &topup.id, "failed", Some(err.code), None, now)?;
            payments::set_activity_status(c, &topup.id, "failed")?;
            super::emit(
                c,
                "topup.failed",
                &topup.id,
                &json!({"customer_id": topup.customer_id, "topup_id": topup.id, "decline_code": err.code}),
                now,
            )?;
            Stored {
                status: err.status.as_u16(),
                body: err.body().to_string(),
            }
        }
    };
    let idem = Idem {
        scope: op.idem_scope,
        key: op.idem_key,
        request_hash: Vec::new(),
    };
    idem::finish(c, &idem, &stored)?;
    Ok(Some(stored))
}

/// Serializes one customer's top-up limit checks. On PostgreSQL (READ COMMITTED) two
/// concurrent top-ups would each miss the other's not yet committed pending top-up and both
/// pass the daily and balance limits; the row lock makes the second wait and see the first.
/// SQLite runs one write transaction at a time, so there is nothing to lock.
fn lock_customer(c: &mut dyn Conn, customer_id: &str) -> ApiResult<()> {
    if c.backend() == konbini_store::Backend::Postgres {
        c.query(
            "SELECT id FROM customers WHERE id = $1 FOR UPDATE",
            konbini_store::params![customer_id],
        )?;
    }
    Ok(())
}

fn pending_topups(c: &mut dyn Conn, customer_id: &str) -> ApiResult<i64> {
    let r = c.query_one(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM topups WHERE customer_id = $1 AND status = 'pending'",
        konbini_store::params![customer_id],
    )?;
    Ok(r.int(0)?)
}

/// Authorizes and captures on the processor. Retries once after a timeout or an outage with
/// the same reference (the processor deduplicates it), then asks what happened; an
/// authorization that cannot be captured is voided. Returns the authorization id.
pub async fn charge(
    state: &AppState,
    token: &str,
    amount: Amount,
    reference: &str,
) -> Result<String, ApiError> {
    let p = &state.processor;
    let cur = amount.currency().code();
    let mut outcome = p.authorize(token, amount.minor(), cur, reference).await;
    if matches!(
        outcome,
        Err(ProcessorError::Timeout | ProcessorError::Unavailable(_))
    ) {
        outcome = p.authorize(token, amount.minor(), cur, reference).await;
    }
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => match p.lookup(reference).await {
            Ok(Some(o)) => o,
            _ => return Err(processor_down(&e)),
        },
    };
    match outcome {
        AuthOutcome::Declined { code } => Err(decline_error(code)),
        AuthOutcome::Approved { authorization_id } => {
            match p.capture(&authorization_id, amount.minor()).await {
                Ok(()) => Ok(authorization_id),
                Err(e) => {
                    // Release the customer's card: nothing will be credited for this authorization.
                    if let Err(v) = p.void(&authorization_id).await {
                        tracing::error!(error = %v, "void after failed capture failed; the processor will expire the authorization");
                    }
                    Err(processor_down(&e))
                }
            }
        }
    }
}

/// The wallet: balance, what is held for pending payments, limits and today's usage.
pub async fn wallet(state: &AppState, customer_id: String) -> ApiResult<serde_json::Value> {
    let st = state.clone();
    let cur = state.config.currency;
    let limits = state.config.limits.clone();
    let now = state.now_ms();
    state
        .db
        .read(move |c| {
            let (balance, held) = ledger::balance(c, &rules::wallet_account(&customer_id, cur))?;
            let (count_today, sum_today) =
                payments::topups_since(c, &customer_id, day_start_ms(now))?;
            let customer =
                customers::by_id(c, &customer_id)?.ok_or_else(ApiError::unauthenticated)?;
            // The tier and its limits, with what is used of them today and this month.
            let profile = konbini_store::risk::profile(c, &customer_id)?;
            let tier = super::risk::tier(
                &st,
                customer.created_ms,
                customer.recovery_hold_until_ms,
                profile.payments,
            );
            let (month_key, month_start) = super::risk::business_month(now);
            let (_, topups_month) = payments::topups_since(c, &customer_id, month_start)?;
            let pay = profile.totals(super::risk::business_day(now), month_key);
            let allowance = st.config.tier_limits.get(tier);
            let describe = |a: &konbini_core::risk::Allowance, day: i64, month: i64| {
                json!({
                    "per_transaction": a.per_transaction_minor,
                    "per_day": a.per_day_minor,
                    "per_month": a.per_month_minor,
                    "day_used": day,
                    "month_used": month,
                })
            };
            Ok::<_, ApiError>(json!({
                "tier": tier.as_str(),
                "tier_limits": {
                    "topup": describe(&allowance.topup, sum_today, topups_month),
                    "payment": describe(&allowance.payment, pay.0, pay.1),
                },
                "currency": cur,
                "balance": balance,
                "held": held,
                "available": balance - held,
                "funding": {"source": customer.funding, "card_id": customer.funding_card_id},
                "limits": {
                    "per_topup": limits.per_topup_minor,
                    "daily_topup": limits.daily_topup_minor,
                    "daily_topup_used": sum_today,
                    "daily_topup_count": count_today,
                    "max_balance": limits.max_balance_minor,
                    "confirmation_required_at": limits.confirm_at_or_above_minor,
                }
            }))
        })
        .await
}

/// Most lines per page of history.
pub const MAX_PAGE: i64 = 100;

/// A page of the customer's history, newest first. The cursor is opaque to clients.
pub async fn transactions(
    state: &AppState,
    customer_id: String,
    limit: Option<i64>,
    cursor: Option<String>,
) -> ApiResult<serde_json::Value> {
    let limit = limit.unwrap_or(20);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid_param(
            "invalid_limit",
            "limit",
            format!("limit must be 1 to {MAX_PAGE}."),
        ));
    }
    let before = match cursor {
        None => None,
        Some(c) => Some(parse_cursor(&c).ok_or_else(|| {
            ApiError::invalid_param("invalid_cursor", "cursor", "Unknown cursor.")
        })?),
    };
    let page = state
        .db
        .read(move |c| payments::activity_page(c, &customer_id, before.clone(), limit + 1))
        .await?;
    let has_more = page.len() as i64 > limit;
    let items: Vec<&Activity> = page.iter().take(limit as usize).collect();
    let next = if has_more {
        items.last().map(|a| format!("{}.{}", a.created_ms, a.id))
    } else {
        None
    };
    Ok(json!({
        "data": items.iter().map(|a| json!({
            "id": a.id, "type": a.kind, "amount": a.amount, "currency": a.currency,
            "status": a.status, "description": a.description, "created_ms": a.created_ms
        })).collect::<Vec<_>>(),
        "has_more": has_more,
        "next_cursor": next,
    }))
}

fn parse_cursor(s: &str) -> Option<(i64, String)> {
    let (ms, id) = s.split_once('.')?;
    let ms = ms.parse::<i64>().ok()?;
    let ok = id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    ok.then(|| (ms, id.to_string()))
}
