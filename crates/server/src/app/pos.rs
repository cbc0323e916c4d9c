//! Payments at the till: charge a scanned code, confirm or reject in the wallet, cancel,
//! refund, and expire holds that nobody confirmed.

use super::funding::{charge, parse_amount};
use super::idem::{self, Idem, Stored};
use crate::error::{ApiError, ApiResult};
use crate::secrets::new_id;
use crate::state::AppState;
use axum::http::StatusCode;
use konbini_core::ledger::{self as rules, AccountKind, Entry};
use konbini_core::paycode::{self, PaymentCode};
use konbini_core::risk::{EventKind, Outcome};
use konbini_core::{Amount, Currency};
use konbini_store::customers;
use konbini_store::ledger::{self, NewHold, Posted};
use konbini_store::payments::{self, Activity, Payment};
use konbini_store::{Conn, StoreError};
use serde_json::json;

/// Most lines in one basket.
pub const MAX_BASKET_LINES: usize = 200;
/// Most units of one line.
pub const MAX_QUANTITY: i64 = 10_000;

/// One basket line as the POS sends it.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct BasketLine {
    pub sku: String,
    pub category: String,
    pub quantity: i64,
    pub unit_price: i64,
}

/// `POST /v1/pos/payments`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentRequest {
    pub code: String,
    pub amount: i64,
    pub currency: String,
    pub basket: Vec<BasketLine>,
    pub order_ref: String,
}

/// `POST /v1/pos/payments/{id}/refunds`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Minor units; the whole remaining amount when absent.
    pub amount: Option<i64>,
}

fn printable(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// Checks the basket: bounded, well-formed, and adding up to the charged amount exactly.
fn check_basket(basket: &[BasketLine], amount: Amount) -> ApiResult<()> {
    if basket.is_empty() || basket.len() > MAX_BASKET_LINES {
        return Err(ApiError::invalid_param(
            "invalid_basket",
            "basket",
            format!("A basket has 1 to {MAX_BASKET_LINES} lines."),
        ));
    }
    let mut total: i64 = 0;
    for (i, l) in basket.iter().enumerate() {
        let p = format!("basket[{i}]");
        if !printable(&l.sku, 64) {
            return Err(ApiError::invalid_param(
                "invalid_basket",
                &format!("{p}.sku"),
                "sku must be 1 to 64 printable ASCII characters.",
            ));
        }
        if l.category.is_empty()
            || l.category.len() > 32
            || !l
                .category
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_')
        {
            return Err(ApiError::invalid_param(
                "invalid_basket",
                &format!("{p}.category"),
                "category must be 1 to 32 of a-z and _.",
            ));
        }
        if !(1..=MAX_QUANTITY).contains(&l.quantity) {
            return Err(ApiError::invalid_param(
                "invalid_basket",
                &format!("{p}.quantity"),
                format!("quantity must be 1 to {MAX_QUANTITY}."),
            ));
        }
        let line = konbini_core::money::line_total(l.unit_price, l.quantity).map_err(|e| {
            ApiError::invalid_param(
                "invalid_basket",
                &format!("{p}.unit_price"),
                format!("Invalid line: {e}."),
            )
        })?;
        total = total.checked_add(line).ok_or_else(|| {
            ApiError::invalid_param("invalid_basket", "basket", "Basket total overflows.")
        })?;
    }
    if total != amount.minor() {
        return Err(ApiError::invalid_param(
            "basket_amount_mismatch",
            "amount",
            format!("The basket adds up to {total}, not {}.", amount.minor()),
        ));
    }
    Ok(())
}

pub fn payment_json(p: &Payment) -> serde_json::Value {
    json!({
        "id": p.id, "object": "payment", "status": p.status, "decline_code": p.decline_code,
        "amount": p.amount, "currency": p.currency, "refunded": p.refunded, "order_ref": p.order_ref,
        "store_id": p.store_id, "terminal_id": p.terminal_id, "funding": p.funding,
        "expires_at_ms": p.expires_ms, "created_ms": p.created_ms,
    })
}

/// What the first transaction of a payment decided.
enum Decided {
    /// Finished in one transaction (wallet funding, or a decline): the stored response.
    Done(Stored),
    /// A payment went through or is held for confirmation: the stored response, and the
    /// store's and terminal's counters to count it in once committed (`risk::SharedCounts`).
    Paid(Stored, [String; 2]),
    /// Card funding: the processor must be asked, then [`finish_card_payment`]; the store's
    /// and terminal's counters as for `Paid`.
    Card {
        payment: Box<Payment>,
        token: String,
        counted: [String; 2],
    },
}

/// Charges a scanned code.
///
/// One transaction: claim the idempotency key; find the live device holding the code's slot;
/// check the one-time value; spend the code (atomically, so of two tills exactly one wins,
/// and older codes of that device die); then move the money from the wallet to the store's
/// settlement account, or place a hold when the customer must confirm. A declined payment is
/// committed too: its code stays spent.
pub async fn create_payment(
    state: &AppState,
    terminal_key_hash: Vec<u8>,
    key: String,
    req: PaymentRequest,
) -> ApiResult<Stored> {
    let amount = parse_amount(state, req.amount, &req.currency)?;
    check_basket(&req.basket, amount)?;
    if !printable(&req.order_ref, 64) {
        return Err(ApiError::invalid_param(
            "invalid_order_ref",
            "order_ref",
            "order_ref must be 1 to 64 printable ASCII characters.",
        ));
    }
    // A mistyped code is refused before any lookup.
    let code = PaymentCode::parse(&req.code).map_err(|_| {
        ApiError::invalid_param("invalid_code", "code", "This is not a valid payment code.")
    })?;
    // The scope (the terminal) is filled in once the key is resolved in the transaction.
    let mut idem = Idem::new("", &key, "POST /v1/pos/payments", &req);
    let race_hash = (
        terminal_key_hash.clone(),
        idem.key.clone(),
        idem.request_hash.clone(),
    );
    let now = state.now_ms();
    let secret = state.secret.clone();
    let cfg = state.config.clone();
    let basket = serde_json::to_string(&req.basket).map_err(|_| ApiError::internal())?;
    let lines: Vec<(String, i64, i64)> = req
        .basket
        .iter()
        .map(|l| {
            let total = l.quantity.checked_mul(l.unit_price).unwrap_or(i64::MAX);
            (l.category.clone(), l.quantity, total)
        })
        .collect();
    let order_ref = req.order_ref.clone();
    let st = state.clone();
    let decided = state
        .db
        .write(move |c| {
            // One round trip reads everything the decision needs: the terminal, an earlier
            // request with this key, and the device holding the code's slot.
            let ctx = konbini_store::stores::pos_context(
                c,
                &terminal_key_hash,
                &idem.key,
                i64::from(code.slot()),
                now - cfg.code_failure_window_ms,
                now,
                cfg.risk_in_line.then(|| amount.currency()),
            )?
            .ok_or_else(ApiError::unauthenticated)?;
            let terminal = ctx.terminal;
            idem.scope.clone_from(&terminal.id);
            if let Some(e) = ctx.existing {
                return idem::answer_existing(e, &idem.request_hash).map(Decided::Done);
            }
            // A terminal that keeps sending bad codes is stopped (guessing, or a broken scanner).
            if ctx.terminal_failures >= cfg.max_code_failures_per_terminal {
                return Err(ApiError {
                    status: StatusCode::TOO_MANY_REQUESTS,
                    kind: "rate_limit_error",
                    code: "too_many_invalid_codes",
                    message: "This terminal sent too many invalid payment codes; try again later."
                        .into(),
                    param: None,
                    retry_after_s: Some(
                        u64::try_from(cfg.code_failure_window_ms / 1000).unwrap_or(600),
                    ),
                });
            }
            let terminal = crate::extract::TerminalAuth {
                terminal_id: terminal.id,
                store_id: terminal.store_id,
            };
            let store_id = terminal.store_id;
            let mut p = Payment {
                id: new_id("pay"),
                customer_id: None,
                device_id: None,
                store_id: store_id.clone(),
                terminal_id: terminal.terminal_id,
                amount: amount.minor(),
                currency: amount.currency().code().into(),
                status: "declined".into(),
                decline_code: None,
                funding: None,
                card_id: None,
                processor_auth: None,
                order_ref: order_ref.clone(),
                basket: basket.clone(),
                refunded: 0,
                hold_id: None,
                expires_ms: None,
                created_ms: now,
                updated_ms: now,
            };
            // After repeated failures for this slot at this terminal, its codes are no longer
            // checked here: guesses stop paying off, and other tills still accept the customer.
            let window = cfg.code_failure_window_ms;
            let slot_key = format!("slot:{}:{}", code.slot(), p.terminal_id);
            let term_key = format!("term:{}", p.terminal_id);
            let record_failure = |c: &mut dyn Conn| -> Result<(), StoreError> {
                konbini_store::stores::record_code_failure(c, &term_key, now, window)?;
                konbini_store::stores::record_code_failure(c, &slot_key, now, window)
            };
            // Check the one-time value (no database work); the code is spent further down,
            // together with the money on the hot path.
            let verified = if ctx.slot_failures >= cfg.max_code_failures_per_slot {
                None
            } else {
                verify_code(&secret, &code, ctx.paying, now)
            };
            let Some((paying, counter)) = verified else {
                record_failure(c)?;
                p.decline_code = Some("invalid_code".into());
                return finish_decided(c, &idem, p, now, None).map(Decided::Done);
            };
            let slot = paying.device.slot;
            // Every path but the immediate wallet payment spends the code first.
            let spend_first = |c: &mut dyn Conn| -> Result<bool, StoreError> {
                customers::consume_code(c, slot, counter)
            };
            let customer_id = paying.device.customer_id.clone();
            p.customer_id = Some(customer_id.clone());
            p.device_id = Some(paying.device.id.clone());
            // After an account recovery, a device bound without a strong factor pays only
            // small amounts until the hold ends.
            let held = now < paying.recovery_hold_until_ms
                && !super::codes::is_strong(&paying.bound_by)
                && amount.minor() > cfg.recovery_hold_payment_limit_minor;
            // The risk engine decides before anything moves (konbini_core::risk).
            let terminal_id = p.terminal_id.clone();
            // The customer's wallet, which carries the profile.
            let wallet = rules::wallet_account(&customer_id, amount.currency());
            let facts = super::risk::PaymentFacts {
                customer_id: &customer_id,
                wallet_id: &wallet,
                account: super::risk::AccountTimes {
                    created_ms: paying.customer_created_ms,
                    recovery_hold_until_ms: paying.recovery_hold_until_ms,
                    password_changed_ms: paying.password_changed_ms,
                    contact_changed_ms: paying.contact_changed_ms,
                },
                device_id: &paying.device.id,
                device_created_ms: paying.device.created_ms,
                store_id: &store_id,
                terminal_id: &terminal_id,
                store_at: ctx.store_at,
                amount: amount.minor(),
                basket: &lines,
                device_accounts: ctx.device_accounts,
            };
            let profile = &ctx.profile;
            // The store's and terminal's rows, with what this node counted and has not
            // written yet.
            let subjects = super::risk::payment_subjects(&facts);
            let mut velocity = ctx.velocity;
            // Without the engine (`konbini bench --without-risk` only), a payment as it was
            // before it: no features, no tier limit, no decision.
            let engine = cfg.risk_in_line;
            for (v, subject) in [&mut velocity.store, &mut velocity.terminal]
                .into_iter()
                .zip(&subjects)
                .filter(|_| engine)
            {
                *v = st
                    .risk
                    .shared
                    .windows(subject, || konbini_store::risk::windows_of(c, subject))?
                    .map_or_else(Default::default, |w| w.velocity(now));
            }
            let features = if engine {
                super::risk::payment_features(&st, &facts, profile, &velocity, now)
            } else {
                konbini_core::risk::Features::new()
            };
            let tier = super::risk::tier(
                &st,
                paying.customer_created_ms,
                paying.recovery_hold_until_ms,
                profile.payments,
            );
            let totals = profile.totals(
                super::risk::business_day(now),
                super::risk::business_month(now).0,
            );
            let over_limit = engine
                && super::risk::check_tier_limit(
                    &st,
                    tier,
                    konbini_core::risk::LimitKind::Payment,
                    amount.minor(),
                    totals,
                )
                .is_err();
            let decision = if engine {
                st.risk.evaluate(&features)
            } else {
                konbini_core::risk::Decision::default()
            };
            let blocked = decision.outcome == Outcome::Block;
            let step_up = decision.outcome == Outcome::StepUp;
            let journal = |c: &mut dyn Conn, p: &Payment| {
                super::risk::journal(
                    c,
                    &decision,
                    &features,
                    EventKind::Payment,
                    &customer_id,
                    Some(&p.id),
                    now,
                )
            };
            let immediate_wallet = paying.customer_status == "active"
                && !held
                && !over_limit
                && !blocked
                && !step_up
                && paying.funding != "card"
                && amount.minor() < cfg.limits.confirm_at_or_above_minor;
            if !immediate_wallet && !spend_first(c)? {
                // Used or outdated by a concurrent scan: same answer as any bad code.
                record_failure(c)?;
                p.customer_id = None;
                p.device_id = None;
                p.decline_code = Some("invalid_code".into());
                return finish_decided(c, &idem, p, now, None).map(Decided::Done);
            }
            if paying.customer_status != "active" {
                p.decline_code = Some("account_unavailable".into());
                return finish_decided(c, &idem, p, now, None).map(Decided::Done);
            }
            if held {
                p.decline_code = Some("recovery_hold".into());
                return finish_decided(c, &idem, p, now, None).map(Decided::Done);
            }
            // A blocked payment, or one the customer would have to confirm while paying by
            // card (no hold to wait on), is declined with a code that does not name the rule.
            if blocked || (step_up && paying.funding == "card") {
                journal(c, &p)?;
                p.decline_code = Some("do_not_honor".into());
                return finish_decided(c, &idem, p, now, None).map(Decided::Done);
            }
            // On the hot path (an immediate wallet payment that opens no case) the journal
            // line, the counters and the profile are written with the payment itself.
            let deferred = immediate_wallet && !decision.opens_case();
            if !deferred {
                journal(c, &p)?;
            }
            // The tier's limits come after the rules, so a blocked run is journaled and opens
            // a case whatever its size.
            if over_limit {
                p.decline_code = Some("limit_exceeded".into());
                return finish_decided(c, &idem, p, now, None).map(Decided::Done);
            }
            if paying.funding == "card"
                && let Some(card_id) = &paying.funding_card_id
                && let Some(card) = customers::card_of(c, &customer_id, card_id)?
            {
                p.funding = Some("card".into());
                p.card_id = Some(card.id.clone());
                p.status = "processing".into();
                super::risk::record_payment(c, &facts, now)?;
                payments::insert_payment(c, &p)?;
                // Claimed without a response: a duplicate meanwhile is told it is in flight.
                idem::record_at_end(c, &idem, None, now)?;
                payments::insert_card_op(
                    c,
                    &payments::CardOp {
                        ref_id: p.id.clone(),
                        kind: "payment".into(),
                        idem_scope: idem.scope.clone(),
                        idem_key: idem.key.clone(),
                        processor_auth: None,
                        amount: None,
                        created_ms: now,
                    },
                )?;
                return Ok(Decided::Card {
                    payment: Box::new(p),
                    token: card.processor_token,
                    counted: subjects,
                });
            }
            p.funding = Some("wallet".into());
            // The settlement account is created by the posting itself if it is new.
            let settlement = rules::store_settlement_account(&store_id, amount.currency());
            if step_up || amount.minor() >= cfg.limits.confirm_at_or_above_minor {
                // Large or risky payment: reserve the money and wait for the customer's
                // confirmation in the wallet.
                let hold_id = new_id("hold");
                let expires = now + cfg.confirmation_timeout_ms;
                let held = ledger::hold(
                    c,
                    &NewHold {
                        id: &hold_id,
                        account_id: &wallet,
                        amount_minor: amount.minor(),
                        currency: amount.currency(),
                        ref_id: &p.id,
                        expires_ms: expires,
                    },
                    now,
                )?;
                if !held {
                    p.decline_code = Some("insufficient_funds".into());
                    return finish_decided(c, &idem, p, now, None).map(Decided::Done);
                }
                super::risk::record_payment(c, &facts, now)?;
                p.status = "pending_confirmation".into();
                p.hold_id = Some(hold_id);
                p.expires_ms = Some(expires);
                let stored = finish_decided(c, &idem, p, now, None)?;
                return Ok(Decided::Paid(stored, subjects));
            }
            let entry =
                Entry::transfer(&wallet, &settlement, amount).map_err(|_| ApiError::internal())?;
            let entry_id = new_id("ent");
            // The journal line of a payment on the hot path (the others were journaled above),
            // named after its payment: journaled on the payment's row, it is read back so.
            // Its features are written by the store, packed on that row.
            let record = (deferred && cfg.risk_in_line).then(|| {
                super::risk::decision_head(
                    konbini_store::risk::decision_id_on_payment(&p.id),
                    &decision,
                    EventKind::Payment,
                    &customer_id,
                    Some(&p.id),
                    now,
                )
            });
            // PostgreSQL: the whole payment as one statement that is its own transaction, when
            // it goes through; otherwise it wrote nothing and the general path below decides.
            // (SQLite has no round trips to save: there the general path is the fast one.)
            if deferred && c.backend() == konbini_store::Backend::Postgres {
                let risk = record
                    .as_ref()
                    .map(|record| konbini_store::risk::PaymentRisk {
                        decision: record,
                        features: &features,
                        // The store and terminal are counted in memory once committed; the
                        // device and profile from the rows as read, the statement checking
                        // that no other payment wrote them since.
                        counted: Some(konbini_store::risk::PaymentCount {
                            read: Some(konbini_store::risk::CountedRows {
                                profile,
                                windows: ctx.windows,
                                device_counted: false,
                                device_code_counter: paying.device.last_code_counter,
                                profile_counted: false,
                            }),
                            ..super::risk::payment_count(&facts, now)
                        }),
                    });
                let post = payments::WalletPost {
                    slot,
                    counter,
                    entry_id: &entry_id,
                    entry: &entry,
                };
                if let Some(stored) = pay_alone(c, &idem, &p, &post, risk.as_ref(), now)? {
                    return Ok(match risk {
                        Some(_) => Decided::Paid(stored, subjects),
                        None => Decided::Done(stored),
                    });
                }
            }
            // The hot path: spend the code and move the money in one step (on SQLite, counting
            // the payment on the device row as it spends the code and on the profile as the
            // wallet's debit pays, from the rows as read).
            let device = record.as_ref().and(ctx.windows[1]).map(|windows| {
                konbini_store::risk::DeviceCount {
                    device_id: &paying.device.id,
                    windows,
                    amount: amount.minor(),
                    now_ms: now,
                }
            });
            let counted_profile = device
                .and(ctx.windows[0])
                .filter(|_| c.backend() == konbini_store::Backend::Sqlite)
                .map(|windows| {
                    let count = super::risk::payment_count(&facts, now);
                    konbini_store::risk::payment_profile(&count, profile, windows)
                });
            let mut posted = false;
            match ledger::spend_code_and_post(
                c,
                slot,
                counter,
                &entry_id,
                "payment",
                &p.id,
                &entry,
                now,
                device.as_ref(),
                counted_profile
                    .as_ref()
                    .map(|profile| ledger::ProfileOnDebit {
                        wallet: &wallet,
                        row: ctx.wallet_row,
                        profile,
                    })
                    .as_ref(),
            )? {
                ledger::CodeAndPost::Posted => {
                    posted = true;
                    if !deferred {
                        super::risk::record_payment(c, &facts, now)?;
                    }
                    p.status = "succeeded".into();
                }
                ledger::CodeAndPost::InsufficientFunds => {
                    p.decline_code = Some("insufficient_funds".into());
                }
                ledger::CodeAndPost::CodeRejected => {
                    record_failure(c)?;
                    p.customer_id = None;
                    p.device_id = None;
                    p.funding = None;
                    p.decline_code = Some("invalid_code".into());
                }
            }
            let Some(record) = &record else {
                let stored = finish_decided(c, &idem, p, now, None)?;
                // Counted above unless the engine is off (a deferred payment without it).
                return Ok(if posted && !deferred {
                    Decided::Paid(stored, subjects)
                } else {
                    Decided::Done(stored)
                });
            };
            let risk = konbini_store::risk::PaymentRisk {
                decision: record,
                features: &features,
                counted: posted.then(|| konbini_store::risk::PaymentCount {
                    // Read at the top of this job: on SQLite nothing else has written them.
                    read: Some(konbini_store::risk::CountedRows {
                        profile,
                        windows: ctx.windows,
                        device_counted: device.is_some(),
                        device_code_counter: paying.device.last_code_counter,
                        profile_counted: counted_profile.is_some(),
                    }),
                    ..super::risk::payment_count(&facts, now)
                }),
            };
            let stored = finish_decided(c, &idem, p, now, Some(&risk))?;
            Ok(if posted {
                Decided::Paid(stored, subjects)
            } else {
                Decided::Done(stored)
            })
        })
        .await;
    let decided = match decided {
        Err(e) if e.code == idem::RACE => {
            // A concurrent request with the same key committed first: answer what it stored.
            let (key_hash, key, request_hash) = race_hash;
            let existing = state
                .db
                .read(move |c| konbini_store::stores::terminal_with_idempotency(c, &key_hash, &key))
                .await?
                .and_then(|(_, e)| e)
                .ok_or_else(ApiError::internal)?;
            return idem::answer_existing(existing, &request_hash);
        }
        other => other?,
    };
    match decided {
        Decided::Done(s) => Ok(s),
        Decided::Paid(s, subjects) => {
            state.risk.shared.count(&subjects, amount.minor(), now);
            Ok(s)
        }
        Decided::Card {
            payment,
            token,
            counted,
        } => {
            state.risk.shared.count(&counted, amount.minor(), now);
            finish_card_payment(state, *payment, token, key).await
        }
    }
}

/// Checks the one-time value against the live device of the code's slot; returns the device
/// and the code's counter. `None` for every kind of bad code (unknown slot, wrong value,
/// expired): the caller answers them all alike. Spending the code is the caller's next step.
fn verify_code(
    secret: &crate::secrets::MasterSecret,
    code: &PaymentCode,
    paying: Option<customers::PayingDevice>,
    now: i64,
) -> Option<(customers::PayingDevice, i64)> {
    let paying = paying?;
    let generation = u32::try_from(paying.device.key_generation).ok()?;
    let key = secret.paycode_key(code.slot(), generation);
    let counter = paycode::verify(&key, code, now).ok()?;
    // A counter not above the last one used is a replay or an outdated code.
    (counter > paying.device.last_code_counter).then_some((paying, counter))
}

/// Inserts the decided payment with its activity line and event, and stores the response.
fn finish_decided(
    c: &mut dyn Conn,
    idem: &Idem,
    p: Payment,
    now: i64,
    risk: Option<&konbini_store::risk::PaymentRisk<'_>>,
) -> ApiResult<Stored> {
    let (activity, event) = activity_and_event(&p, now);
    let stored = Stored::json(StatusCode::CREATED, &payment_json(&p));
    let recorded = payments::insert_payment_recorded(
        c,
        &p,
        activity.as_ref(),
        &event,
        &idem_record(idem, &stored),
        risk,
    )?;
    if !recorded {
        return Err(race());
    }
    Ok(stored)
}

/// PostgreSQL's hot path: payment `p` as one statement that is its own transaction
/// (`payments::pay_and_record_alone`), recorded as succeeded. `Some(answer)` when it went
/// through; `None` when it wrote nothing (a bad code, a short wallet) and the general path
/// decides; the idempotency race when a duplicate was recorded first.
fn pay_alone(
    c: &mut dyn Conn,
    idem: &Idem,
    p: &Payment,
    post: &payments::WalletPost<'_>,
    risk: Option<&konbini_store::risk::PaymentRisk<'_>>,
    now: i64,
) -> ApiResult<Option<Stored>> {
    let mut paid = p.clone();
    paid.status = "succeeded".into();
    let (activity, event) = activity_and_event(&paid, now);
    let Some(activity) = activity else {
        return Ok(None);
    };
    let stored = Stored::json(StatusCode::CREATED, &payment_json(&paid));
    let outcome = payments::pay_and_record_alone(
        c,
        post,
        &paid,
        &activity,
        &event,
        &idem_record(idem, &stored),
        risk,
    )?;
    match outcome {
        Some(payments::PaidAlone::Paid) => Ok(Some(stored)),
        Some(payments::PaidAlone::Race) => Err(race()),
        _ => Ok(None),
    }
}

/// The idempotency record that stores `stored` as the answer to request `idem`.
fn idem_record<'a>(idem: &'a Idem, stored: &'a Stored) -> payments::IdempotencyRecord<'a> {
    payments::IdempotencyRecord {
        scope: &idem.scope,
        key: &idem.key,
        request_hash: &idem.request_hash,
        status: stored.status,
        body: &stored.body,
    }
}

/// A concurrent request with the same Idempotency-Key was recorded first (the caller answers
/// with what that one stored).
fn race() -> ApiError {
    ApiError::idempotency(
        StatusCode::CONFLICT,
        idem::RACE,
        "A concurrent request used this Idempotency-Key.",
    )
}

/// The customer's activity line (when the payer is known) and the outbox event of a payment.
fn activity_and_event(
    p: &Payment,
    now: i64,
) -> (Option<Activity>, konbini_store::outbox::NewEvent) {
    let activity = p.customer_id.as_ref().map(|customer_id| Activity {
        id: p.id.clone(),
        customer_id: customer_id.clone(),
        kind: "payment".into(),
        amount: -p.amount,
        currency: p.currency.clone(),
        status: p.status.clone(),
        description: format!("Payment at store {}", p.store_id),
        created_ms: now,
    });
    let event = konbini_store::outbox::NewEvent {
        id: new_id("evt"),
        topic: format!("payment.{}", p.status),
        aggregate_id: p.id.clone(),
        payload: json!({
            "payment_id": p.id, "customer_id": p.customer_id, "store_id": p.store_id, "amount": p.amount,
            "currency": p.currency, "status": p.status, "decline_code": p.decline_code
        })
        .to_string(),
        created_ms: now,
    };
    (activity, event)
}

/// The customer's activity line and the outbox event for a payment's current state.
fn record(c: &mut dyn Conn, p: &Payment, now: i64) -> Result<(), StoreError> {
    if let Some(customer_id) = &p.customer_id {
        payments::insert_activity(
            c,
            &Activity {
                id: p.id.clone(),
                customer_id: customer_id.clone(),
                kind: "payment".into(),
                amount: -p.amount,
                currency: p.currency.clone(),
                status: p.status.clone(),
                description: format!("Payment at store {}", p.store_id),
                created_ms: now,
            },
        )?;
    }
    super::emit(
        c,
        &format!("payment.{}", p.status),
        &p.id,
        &json!({
            "payment_id": p.id, "customer_id": p.customer_id, "store_id": p.store_id, "amount": p.amount,
            "currency": p.currency, "status": p.status, "decline_code": p.decline_code
        }),
        now,
    )
}

/// Second half of a card-funded payment: authorize and capture, then post the entry.
async fn finish_card_payment(
    state: &AppState,
    p: Payment,
    token: String,
    key: String,
) -> ApiResult<Stored> {
    let currency = Currency::parse(&p.currency).map_err(|_| ApiError::internal())?;
    let amount = Amount::new(p.amount, currency).map_err(|_| ApiError::internal())?;
    let outcome = charge(state, &token, amount, &p.id).await;
    let now = state.now_ms();
    let id = p.id.clone();
    let settled = state
        .db
        .write(move |c| settle_card_payment(c, &id, &outcome, now))
        .await?;
    match settled {
        Some(stored) => Ok(stored),
        // The reconciler finished it first (only after a very long stall): answer what it stored.
        None => {
            let (scope, key) = (p.terminal_id.clone(), key);
            let existing = state
                .db
                .read(move |c| konbini_store::idempotency::lookup(c, &scope, &key))
                .await?
                .and_then(|(_, status, body)| {
                    Some(Stored {
                        status: u16::try_from(status?).ok()?,
                        body: body?,
                    })
                })
                .ok_or_else(ApiError::internal)?;
            Ok(existing)
        }
    }
}

/// Second transaction of a card-funded payment, shared by the live request and the
/// reconciler: posts card clearing → store when the processor captured, records the decline
/// otherwise, and completes the idempotency record. `None` when already finished.
pub(crate) fn settle_card_payment(
    c: &mut dyn Conn,
    payment_id: &str,
    outcome: &Result<String, ApiError>,
    now: i64,
) -> ApiResult<Option<Stored>> {
    let Some(op) = payments::take_card_op(c, payment_id)? else {
        return Ok(None);
    };
    let mut p = payments::payment_by_id(c, payment_id)?.ok_or_else(ApiError::internal)?;
    let currency = Currency::parse(&p.currency).map_err(|_| ApiError::internal())?;
    let amount = Amount::new(p.amount, currency).map_err(|_| ApiError::internal())?;
    match outcome {
        Ok(auth) => {
            let clearing =
                rules::card_clearing_account(p.customer_id.as_deref().unwrap_or(""), currency);
            let settlement = rules::store_settlement_account(&p.store_id, currency);
            let entry = Entry::transfer(&clearing, &settlement, amount)
                .map_err(|_| ApiError::internal())?;
            // Both accounts are created by the posting if this is their first use.
            if ledger::post(c, &new_id("ent"), "payment", &p.id, &entry, now)? != Posted::Ok {
                return Err(ApiError::internal());
            }
            payments::finish_payment(c, &p.id, "processing", "succeeded", None, Some(auth), now)?;
            p.status = "succeeded".into();
            p.processor_auth = Some(auth.clone());
        }
        Err(e) => {
            payments::finish_payment(c, &p.id, "processing", "declined", Some(e.code), None, now)?;
            p.status = "declined".into();
            p.decline_code = Some(e.code.into());
        }
    }
    record(c, &p, now)?;
    let stored = Stored::json(StatusCode::CREATED, &payment_json(&p));
    let idem = Idem {
        scope: op.idem_scope,
        key: op.idem_key,
        request_hash: Vec::new(),
    };
    idem::finish(c, &idem, &stored)?;
    Ok(Some(stored))
}

/// A payment as the terminal's store sees it (another store's payment is "not found").
/// A pending payment past its deadline is expired on the spot.
pub async fn get_payment(
    state: &AppState,
    store_id: String,
    id: String,
) -> ApiResult<serde_json::Value> {
    let now = state.now_ms();
    let (sid, pid) = (store_id.clone(), id.clone());
    let p = state
        .db
        .read(move |c| payments::payment_in_store(c, &pid, &sid))
        .await?
        .ok_or_else(|| ApiError::not_found("payment"))?;
    if p.status == "pending_confirmation" && p.expires_ms.is_some_and(|e| e <= now) {
        expire_payment(state, p.id.clone()).await?;
        let p = state
            .db
            .read(move |c| payments::payment_in_store(c, &id, &store_id))
            .await?
            .ok_or_else(|| ApiError::not_found("payment"))?;
        return Ok(payment_json(&p));
    }
    Ok(payment_json(&p))
}

/// Expires one pending payment whose hold timed out: the hold is voided, the money stays.
pub async fn expire_payment(state: &AppState, payment_id: String) -> ApiResult<()> {
    let now = state.now_ms();
    state
        .db
        .write(move |c| {
            lock_payment(c, &payment_id)?;
            let Some(p) = payments::payment_by_id(c, &payment_id)? else {
                return Ok(());
            };
            if p.status != "pending_confirmation" || p.expires_ms.is_none_or(|e| e > now) {
                return Ok(());
            }
            end_pending(c, p, "expired", Some("confirmation_timeout"), now)
        })
        .await
}

/// Voids the hold of a pending payment and moves it to a final non-paid state.
fn end_pending(
    c: &mut dyn Conn,
    mut p: Payment,
    to: &str,
    decline_code: Option<&str>,
    now: i64,
) -> ApiResult<()> {
    if let Some(h) = &p.hold_id {
        ledger::release_hold(c, h, "voided")?;
    }
    if payments::finish_payment(
        c,
        &p.id,
        "pending_confirmation",
        to,
        decline_code,
        None,
        now,
    )? {
        p.status = to.into();
        p.decline_code = decline_code.map(Into::into);
        payments::set_activity_status(c, &p.id, to)?;
        super::emit(
            c,
            &format!("payment.{to}"),
            &p.id,
            &json!({"payment_id": p.id, "customer_id": p.customer_id, "status": to}),
            now,
        )?;
    }
    Ok(())
}

/// Voids every hold that has timed out (run by a background task every second). Bounded per
/// run so one sweep never holds the writer for long.
pub async fn expire_due(state: &AppState) -> ApiResult<usize> {
    let now = state.now_ms();
    let due = state
        .db
        .read(move |c| ledger::expired_holds(c, now, 100))
        .await?;
    let n = due.len();
    for (_, payment_id) in due {
        expire_payment(state, payment_id).await?;
    }
    Ok(n)
}

/// Payments waiting for this customer's confirmation.
pub async fn pending_for_customer(
    state: &AppState,
    customer_id: String,
) -> ApiResult<serde_json::Value> {
    let now = state.now_ms();
    let list = state
        .db
        .read(move |c| payments::pending_for_customer(c, &customer_id, now))
        .await?;
    Ok(json!({"data": list.iter().map(|p| {
        let mut j = payment_json(p);
        j["basket"] = serde_json::from_str(&p.basket).unwrap_or(serde_json::Value::Null);
        j
    }).collect::<Vec<_>>()}))
}

/// The customer confirms (or rejects) a pending payment from the wallet.
/// Confirms a payment waiting in the wallet. Confirming is the second factor of a payment the
/// rules (or its size) held: it needs a sign-in newer than the step-up window on the bound
/// device — the device plus the password (or a new sign-in with a second factor).
pub async fn confirm_pending(
    state: &AppState,
    auth: &crate::extract::CustomerAuth,
    payment_id: String,
) -> ApiResult<serde_json::Value> {
    auth.require_recent_auth(state)?;
    decide_pending(state, auth.customer_id.clone(), payment_id, true).await
}

pub async fn decide_pending(
    state: &AppState,
    customer_id: String,
    payment_id: String,
    confirm: bool,
) -> ApiResult<serde_json::Value> {
    let now = state.now_ms();
    // The outer result is the transaction's (an `Err` rolls it back); the inner one is the
    // answer, so that expiring a payment found past its deadline is committed even though the
    // customer is told it is too late.
    state
        .db
        .write(move |c| {
            lock_payment(c, &payment_id)?;
            let mut p = payments::payment_of_customer(c, &payment_id, &customer_id)?
                .ok_or_else(|| ApiError::not_found("payment"))?;
            if p.status != "pending_confirmation" {
                return Err(ApiError::conflict("payment_not_pending", format!("The payment is {}.", p.status)));
            }
            if p.expires_ms.is_none_or(|e| e <= now) {
                end_pending(c, p, "expired", Some("confirmation_timeout"), now)?;
                return Ok(Err(ApiError::conflict("payment_expired", "The payment waited too long and has expired.")));
            }
            if !confirm {
                end_pending(c, p.clone(), "declined", Some("rejected_by_customer"), now)?;
                p.status = "declined".into();
                p.decline_code = Some("rejected_by_customer".into());
                return Ok(Ok(payment_json(&p)));
            }
            let currency = Currency::parse(&p.currency).map_err(|_| ApiError::internal())?;
            let amount = Amount::new(p.amount, currency).map_err(|_| ApiError::internal())?;
            if let Some(h) = &p.hold_id
                && !ledger::release_hold(c, h, "posted")?
            {
                return Err(ApiError::conflict("payment_not_pending", "The payment is no longer pending."));
            }
            let wallet = rules::wallet_account(&customer_id, currency);
            let settlement = rules::store_settlement_account(&p.store_id, currency);
            let entry = Entry::transfer(&wallet, &settlement, amount).map_err(|_| ApiError::internal())?;
            if ledger::post(c, &new_id("ent"), "payment", &p.id, &entry, now)? != Posted::Ok {
                // The hold guaranteed the funds; failing here means the ledger is inconsistent.
                return Err(ApiError::internal());
            }
            payments::finish_payment(c, &p.id, "pending_confirmation", "succeeded", None, None, now)?;
            payments::set_activity_status(c, &p.id, "succeeded")?;
            p.status = "succeeded".into();
            super::emit(c, "payment.succeeded", &p.id, &json!({"payment_id": p.id, "customer_id": p.customer_id, "store_id": p.store_id, "amount": p.amount, "currency": p.currency, "status": "succeeded"}), now)?;
            Ok(Ok(payment_json(&p)))
        })
        .await?
}

/// Takes the payment's row lock before it is read, so that cancels, refunds, confirmations and
/// expiries of one payment run one after another, each seeing the others' committed result.
/// (PostgreSQL runs at READ COMMITTED: without this, a cancel and a refund that both read the
/// payment as `succeeded` before either commits could both pay the money back. SQLite has a
/// single writer, where this is a no-op.)
fn lock_payment(c: &mut dyn Conn, id: &str) -> Result<(), StoreError> {
    c.exec(
        "UPDATE payments SET updated_ms = updated_ms WHERE id = $1",
        konbini_store::params![id],
    )?;
    Ok(())
}

/// Card work to do after a refund or cancel has committed.
enum CardFollowUp {
    None,
    Refund {
        auth: String,
        amount: i64,
        reference: String,
    },
}

/// Refunds all or part of a succeeded payment, never more than what remains.
pub async fn refund(
    state: &AppState,
    terminal_id: String,
    store_id: String,
    payment_id: String,
    key: String,
    req: RefundRequest,
) -> ApiResult<Stored> {
    let idem = Idem::new(
        &terminal_id,
        &key,
        &format!("POST /v1/pos/payments/{payment_id}/refunds"),
        &req,
    );
    let now = state.now_ms();
    let (stored, follow) = state
        .db
        .write(move |c| {
            if let Some(s) = idem::begin(c, &idem, now)? {
                return Ok((s, CardFollowUp::None));
            }
            lock_payment(c, &payment_id)?;
            let p = payments::payment_in_store(c, &payment_id, &store_id)?.ok_or_else(|| ApiError::not_found("payment"))?;
            if p.status != "succeeded" {
                return Err(ApiError::conflict("payment_not_refundable", format!("A {} payment cannot be refunded.", p.status)));
            }
            let remaining = p.amount - p.refunded;
            if req.amount.is_none() && remaining <= 0 {
                // "Refund the rest" of a fully refunded payment: nothing is left, say so.
                return Err(ApiError::unprocessable("refund_exceeds_payment", "Nothing of this payment is left to refund.").with_param("amount"));
            }
            let amount_minor = req.amount.unwrap_or(remaining);
            let currency = Currency::parse(&p.currency).map_err(|_| ApiError::internal())?;
            let amount = Amount::new(amount_minor, currency)
                .map_err(|e| ApiError::invalid_param("invalid_amount", "amount", format!("Invalid amount: {e}.")))?;
            if !payments::add_refunded(c, &p.id, amount.minor(), now)? {
                return Err(ApiError::unprocessable(
                    "refund_exceeds_payment",
                    format!("At most {remaining} of this payment can still be refunded."),
                ).with_param("amount"));
            }
            let refund_id = new_id("re");
            let settlement = rules::store_settlement_account(&p.store_id, currency);
            let customer_id = p.customer_id.clone().ok_or_else(ApiError::internal)?;
            let (to, follow) = if p.funding.as_deref() == Some("card") {
                let clearing = rules::card_clearing_account(&customer_id, currency);
                ledger::ensure_account(c, &clearing, AccountKind::CardClearing, currency, now)?;
                let auth = p.processor_auth.clone().ok_or_else(ApiError::internal)?;
                (clearing, CardFollowUp::Refund { auth, amount: amount.minor(), reference: refund_id.clone() })
            } else {
                let wallet = rules::wallet_account(&customer_id, currency);
                ledger::ensure_account(c, &wallet, AccountKind::Wallet, currency, now)?;
                (wallet, CardFollowUp::None)
            };
            let entry = Entry::transfer(&settlement, &to, amount).map_err(|_| ApiError::internal())?;
            if ledger::post(c, &new_id("ent"), "refund", &refund_id, &entry, now)? != Posted::Ok {
                return Err(ApiError::internal());
            }
            payments::insert_refund(c, &refund_id, &p.id, amount.minor(), &p.currency, now)?;
            payments::insert_activity(c, &Activity {
                id: refund_id.clone(), customer_id: customer_id.clone(), kind: "refund".into(), amount: amount.minor(),
                currency: p.currency.clone(), status: "succeeded".into(), description: format!("Refund of {}", p.id), created_ms: now,
            })?;
            super::emit(c, "refund.succeeded", &p.id, &json!({"refund_id": refund_id, "payment_id": p.id, "customer_id": customer_id, "amount": amount.minor(), "currency": p.currency}), now)?;
            let body = json!({"id": refund_id, "object": "refund", "payment_id": p.id, "amount": amount.minor(), "currency": p.currency, "status": "succeeded", "created_ms": now});
            record_card_refund(c, &follow, now)?;
            let stored = Stored::json(StatusCode::CREATED, &body);
            idem::finish(c, &idem, &stored)?;
            Ok((stored, follow))
        })
        .await?;
    card_follow_up(state, follow).await;
    Ok(stored)
}

/// Returns money to the card after the ledger has recorded it. The ledger entry (store →
/// card clearing) is already committed; a processor failure here is logged for operations
/// to retry with the same reference, which the processor deduplicates.
async fn card_follow_up(state: &AppState, follow: CardFollowUp) {
    if let CardFollowUp::Refund {
        auth,
        amount,
        reference,
    } = follow
    {
        match state.processor.refund(&auth, amount, &reference).await {
            Ok(()) => {
                let r = state
                    .db
                    .write(move |c| payments::take_card_op(c, &reference))
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "card refund confirmed but its marker stays; the reconciler will finish it");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, refund = %reference, "card refund not yet confirmed; the reconciler retries it");
            }
        }
    }
}

/// Leaves a marker for a card refund in the refund's own transaction, so that a refund the
/// processor has not confirmed (an outage, a crash right after the commit) is retried by the
/// reconciler with the same reference until it is.
fn record_card_refund(c: &mut dyn Conn, follow: &CardFollowUp, now: i64) -> Result<(), StoreError> {
    if let CardFollowUp::Refund {
        auth,
        amount,
        reference,
    } = follow
    {
        payments::insert_card_op(
            c,
            &payments::CardOp {
                ref_id: reference.clone(),
                kind: "refund".into(),
                idem_scope: String::new(),
                idem_key: String::new(),
                processor_auth: Some(auth.clone()),
                amount: Some(*amount),
                created_ms: now,
            },
        )?;
    }
    Ok(())
}

/// Cancels a payment: a pending one releases its hold; a succeeded one with nothing refunded
/// is reversed in full.
pub async fn cancel(
    state: &AppState,
    terminal_id: String,
    store_id: String,
    payment_id: String,
    key: String,
) -> ApiResult<Stored> {
    let idem = Idem::new(
        &terminal_id,
        &key,
        &format!("POST /v1/pos/payments/{payment_id}/cancel"),
        &(),
    );
    let now = state.now_ms();
    let (stored, follow) = state
        .db
        .write(move |c| {
            if let Some(s) = idem::begin(c, &idem, now)? {
                return Ok((s, CardFollowUp::None));
            }
            lock_payment(c, &payment_id)?;
            let mut p = payments::payment_in_store(c, &payment_id, &store_id)?.ok_or_else(|| ApiError::not_found("payment"))?;
            let mut follow = CardFollowUp::None;
            match p.status.as_str() {
                "pending_confirmation" => {
                    end_pending(c, p.clone(), "canceled", None, now)?;
                    p.status = "canceled".into();
                }
                "succeeded" if p.refunded == 0 => {
                    let currency = Currency::parse(&p.currency).map_err(|_| ApiError::internal())?;
                    let amount = Amount::new(p.amount, currency).map_err(|_| ApiError::internal())?;
                    let customer_id = p.customer_id.clone().ok_or_else(ApiError::internal)?;
                    let settlement = rules::store_settlement_account(&p.store_id, currency);
                    let to = if p.funding.as_deref() == Some("card") {
                        let auth = p.processor_auth.clone().ok_or_else(ApiError::internal)?;
                        follow = CardFollowUp::Refund { auth, amount: p.amount, reference: format!("cancel_{}", p.id) };
                        rules::card_clearing_account(&customer_id, currency)
                    } else {
                        rules::wallet_account(&customer_id, currency)
                    };
                    let entry = Entry::transfer(&settlement, &to, amount).map_err(|_| ApiError::internal())?;
                    if ledger::post(c, &new_id("ent"), "reversal", &p.id, &entry, now)? != Posted::Ok {
                        return Err(ApiError::internal());
                    }
                    if !payments::transition_payment(c, &p.id, "succeeded", "canceled", now)? {
                        return Err(ApiError::conflict("payment_not_cancelable", "The payment changed; retry."));
                    }
                    payments::set_activity_status(c, &p.id, "canceled")?;
                    super::emit(c, "payment.canceled", &p.id, &json!({"payment_id": p.id, "customer_id": p.customer_id, "amount": p.amount, "currency": p.currency}), now)?;
                    p.status = "canceled".into();
                }
                other => {
                    return Err(ApiError::conflict(
                        "payment_not_cancelable",
                        format!("A {other} payment cannot be canceled{}.", if other == "succeeded" { " after a refund; refund the rest instead" } else { "" }),
                    ));
                }
            }
            record_card_refund(c, &follow, now)?;
            let stored = Stored::json(StatusCode::OK, &payment_json(&p));
            idem::finish(c, &idem, &stored)?;
            Ok((stored, follow))
        })
        .await?;
    card_follow_up(state, follow).await;
    Ok(stored)
}
