//! The card-processor simulator: an in-memory acquirer (and bank) with Stripe-like test cards, usable in
//! process or as its own HTTP service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::{
    AuthorizeRequest, CaptureRequest, Done, ErrorBody, ErrorDetail, LookupRequest, LookupResponse,
    RefundRequest, TokenizeRequest, TokenizeResponse, VoidRequest,
};
use super::{AuthOutcome, CardDetails, DeclineCode, ProcessorError, TokenizedCard};

/// In-memory simulator; clones share the same state.
#[derive(Clone)]
pub struct Simulator {
    state: Arc<Mutex<SimState>>,
    slow: Duration,
}

#[derive(Default)]
struct SimState {
    /// token -> PAN. The simulator plays the bank, so it (and only it) keeps the number.
    cards: HashMap<String, String>,
    authorizations: HashMap<String, Authorization>,
    /// Authorize reference -> the request and its outcome, replayed on a retry.
    by_reference: HashMap<String, AuthRecord>,
    /// Refund reference -> (authorization id, amount), so a retried refund is not paid twice.
    refunds: HashMap<String, (String, i64)>,
}

struct Authorization {
    amount_minor: i64,
    captured: Option<i64>,
    refunded: i64,
    voided: bool,
}

struct AuthRecord {
    token: String,
    amount_minor: i64,
    currency: String,
    outcome: AuthOutcome,
}

/// What a card does when authorized (tokenization only checks the number, expiry and cvc).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Approve,
    Decline(DeclineCode),
    Fail,
    Slow,
}

// By hand: the state holds card numbers, which must never reach a log through `{:?}`.
impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("slow", &self.slow)
            .finish_non_exhaustive()
    }
}

fn behaviour_of(pan: &str) -> Behaviour {
    match pan {
        "4000000000000002" => Behaviour::Decline(DeclineCode::CardDeclined),
        "4000000000009995" => Behaviour::Decline(DeclineCode::InsufficientFunds),
        "4000000000000069" => Behaviour::Decline(DeclineCode::ExpiredCard),
        "4000000000000119" => Behaviour::Fail,
        "4000000000006975" => Behaviour::Slow,
        _ => Behaviour::Approve,
    }
}

fn rejected(msg: &str) -> ProcessorError {
    ProcessorError::Rejected(msg.to_owned())
}

impl Simulator {
    /// `slow_ms` = how long the "slow" test card stalls an authorization.
    pub fn new(slow_ms: u64) -> Self {
        Self {
            state: Arc::default(),
            slow: Duration::from_millis(slow_ms),
        }
    }

    /// How many authorizations the simulated bank has made (for tests: no double charge).
    pub fn authorization_count(&self) -> usize {
        self.state().authorizations.len()
    }

    /// What the simulated bank charged in total: captured minus refunded.
    pub fn net_charged_minor(&self) -> i64 {
        self.state()
            .authorizations
            .values()
            .map(|a| a.captured.unwrap_or(0) - a.refunded)
            .sum()
    }

    fn state(&self) -> MutexGuard<'_, SimState> {
        // Every update below is completed before the guard is dropped, so a poisoned lock (a panic
        // elsewhere while holding it) still holds consistent state.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) async fn tokenize(
        &self,
        card: &CardDetails,
    ) -> Result<Result<TokenizedCard, DeclineCode>, ProcessorError> {
        let (pan, exp_year) = match validate(card, current_year_month()) {
            Ok(v) => v,
            Err(code) => return Ok(Err(code)),
        };
        let token = random_id("tok_")?;
        let tokenized = TokenizedCard {
            token: token.clone(),
            brand: brand_of(&pan).to_owned(),
            last4: pan[pan.len() - 4..].to_owned(),
            exp_month: card.exp_month,
            exp_year,
        };
        self.state().cards.insert(token, pan);
        Ok(Ok(tokenized))
    }

    pub(super) async fn authorize(
        &self,
        token: &str,
        amount_minor: i64,
        currency: &str,
        reference: &str,
    ) -> Result<AuthOutcome, ProcessorError> {
        check_amount(amount_minor)?;
        check_reference(reference)?;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(rejected("currency must be an ISO 4217 code such as JPY"));
        }
        let (outcome, slow) = {
            let mut st = self.state();
            if let Some(prev) = st.by_reference.get(reference) {
                if prev.token != token
                    || prev.amount_minor != amount_minor
                    || prev.currency != currency
                {
                    return Err(rejected(
                        "reference was already used with different parameters",
                    ));
                }
                // A replay answers at once, even for the slow card: the retry after a timeout must work.
                return Ok(prev.outcome.clone());
            }
            // An unknown token (e.g. issued by a simulator that has since restarted) is an unusable
            // card from the customer's point of view, not a bug in the caller.
            let behaviour = st
                .cards
                .get(token)
                .map_or(Behaviour::Decline(DeclineCode::InvalidCard), |pan| {
                    behaviour_of(pan)
                });
            let outcome = match behaviour {
                // Not recorded: the processor failed before deciding, so lookup says "never seen".
                Behaviour::Fail => {
                    return Err(ProcessorError::Unavailable(
                        "simulated processor error".into(),
                    ));
                }
                Behaviour::Decline(code) => AuthOutcome::Declined { code },
                Behaviour::Approve | Behaviour::Slow => {
                    let id = random_id("auth_")?;
                    st.authorizations.insert(
                        id.clone(),
                        Authorization {
                            amount_minor,
                            captured: None,
                            refunded: 0,
                            voided: false,
                        },
                    );
                    AuthOutcome::Approved {
                        authorization_id: id,
                    }
                }
            };
            // Recorded before the stall, like a bank whose answer is lost on the way back: a caller
            // that timed out finds the outcome with `lookup`.
            st.by_reference.insert(
                reference.to_owned(),
                AuthRecord {
                    token: token.to_owned(),
                    amount_minor,
                    currency: currency.to_owned(),
                    outcome: outcome.clone(),
                },
            );
            (outcome, behaviour == Behaviour::Slow)
        };
        if slow {
            tokio::time::sleep(self.slow).await;
        }
        Ok(outcome)
    }

    pub(super) async fn capture(
        &self,
        authorization_id: &str,
        amount_minor: i64,
    ) -> Result<(), ProcessorError> {
        check_amount(amount_minor)?;
        let mut st = self.state();
        let auth = st
            .authorizations
            .get_mut(authorization_id)
            .ok_or_else(|| rejected("unknown authorization"))?;
        if auth.voided {
            return Err(rejected("authorization was voided"));
        }
        match auth.captured {
            // The same capture again is a retry, not a second capture.
            Some(done) if done == amount_minor => Ok(()),
            Some(_) => Err(rejected("authorization was already captured")),
            None if amount_minor > auth.amount_minor => {
                Err(rejected("capture exceeds the authorized amount"))
            }
            None => {
                auth.captured = Some(amount_minor);
                Ok(())
            }
        }
    }

    pub(super) async fn void(&self, authorization_id: &str) -> Result<(), ProcessorError> {
        let mut st = self.state();
        let auth = st
            .authorizations
            .get_mut(authorization_id)
            .ok_or_else(|| rejected("unknown authorization"))?;
        if auth.captured.is_some() {
            return Err(rejected("authorization was captured; refund it instead"));
        }
        auth.voided = true;
        Ok(())
    }

    pub(super) async fn refund(
        &self,
        authorization_id: &str,
        amount_minor: i64,
        reference: &str,
    ) -> Result<(), ProcessorError> {
        check_amount(amount_minor)?;
        check_reference(reference)?;
        let mut guard = self.state();
        let st = &mut *guard;
        if let Some((prev_id, prev_amount)) = st.refunds.get(reference) {
            return if prev_id == authorization_id && *prev_amount == amount_minor {
                Ok(())
            } else {
                Err(rejected(
                    "reference was already used with different parameters",
                ))
            };
        }
        let auth = st
            .authorizations
            .get_mut(authorization_id)
            .ok_or_else(|| rejected("unknown authorization"))?;
        let captured = auth
            .captured
            .ok_or_else(|| rejected("authorization was not captured"))?;
        let total = auth
            .refunded
            .checked_add(amount_minor)
            .filter(|total| *total <= captured)
            .ok_or_else(|| rejected("refund exceeds the captured amount not yet refunded"))?;
        auth.refunded = total;
        st.refunds.insert(
            reference.to_owned(),
            (authorization_id.to_owned(), amount_minor),
        );
        Ok(())
    }

    pub(super) async fn lookup(
        &self,
        reference: &str,
    ) -> Result<Option<AuthOutcome>, ProcessorError> {
        Ok(self
            .state()
            .by_reference
            .get(reference)
            .map(|r| r.outcome.clone()))
    }
}

fn check_amount(amount_minor: i64) -> Result<(), ProcessorError> {
    if amount_minor > 0 {
        Ok(())
    } else {
        Err(rejected("amount must be positive"))
    }
}

fn check_reference(reference: &str) -> Result<(), ProcessorError> {
    if reference.is_empty() || reference.len() > 255 {
        return Err(rejected("reference must be 1 to 255 bytes"));
    }
    Ok(())
}

/// Checks a card as an acquirer would; returns the bare digits and the four-digit expiry year.
/// `now` is (year, month), passed in so the check is testable without the wall clock.
pub(super) fn validate(card: &CardDetails, now: (u32, u32)) -> Result<(String, u32), DeclineCode> {
    // Customers type spaces and dashes; anything else is not a card number.
    let pan: String = card
        .number
        .chars()
        .filter(|c| *c != ' ' && *c != '-')
        .collect();
    if !(12..=19).contains(&pan.len()) || !pan.bytes().all(|b| b.is_ascii_digit()) || !luhn_ok(&pan)
    {
        return Err(DeclineCode::InvalidCard);
    }
    // "12/27" style two-digit years are common on forms.
    let exp_year = if card.exp_year < 100 {
        card.exp_year + 2000
    } else {
        card.exp_year
    };
    if !(1..=12).contains(&card.exp_month) || (exp_year, card.exp_month) < now {
        return Err(DeclineCode::ExpiredCard);
    }
    if !(3..=4).contains(&card.cvc.len()) || !card.cvc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DeclineCode::InvalidCard);
    }
    Ok((pan, exp_year))
}

/// Luhn checksum over ASCII digits.
pub(super) fn luhn_ok(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

pub(super) fn brand_of(pan: &str) -> &'static str {
    let prefix = |n: usize| {
        pan.get(..n)
            .and_then(|p| p.parse::<u32>().ok())
            .unwrap_or(0)
    };
    match (prefix(1), prefix(2), prefix(4)) {
        (4, _, _) => "visa",
        (_, 51..=55, _) | (_, _, 2221..=2720) => "mastercard",
        (_, 34 | 37, _) => "amex",
        (_, 35, _) => "jcb",
        _ => "unknown",
    }
}

/// The current (year, month) in UTC.
fn current_year_month() -> (u32, u32) {
    // A clock before 1970 is broken; treating it as 1970 only makes expired cards look valid to the
    // simulator, which is harmless.
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    year_month_from_days(secs / 86_400)
}

/// Civil (year, month) from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub(super) fn year_month_from_days(days: u64) -> (u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (u32::try_from(year).unwrap_or(u32::MAX), month as u32)
}

/// `prefix` + 24 hex characters from the OS CSPRNG.
fn random_id(prefix: &str) -> Result<String, ProcessorError> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes)
        .map_err(|_| ProcessorError::Unavailable("no randomness available".into()))?;
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    for b in bytes {
        id.push_str(&format!("{b:02x}"));
    }
    Ok(id)
}

// ---------------------------------------------------------------------------------------------------
// The simulator as an HTTP service.

/// The simulator as its own HTTP service (for `konbini processor-sim`): JSON POST endpoints `/tokenize`,
/// `/authorize`, `/capture`, `/void`, `/refund` and `/lookup`. Rejected requests answer 4xx and processor
/// errors 500, both with `{"error": {"type", "code", "message"}}`.
pub fn simulator_router(sim: Simulator) -> Router {
    Router::new()
        .route("/tokenize", post(tokenize))
        .route("/authorize", post(authorize))
        .route("/capture", post(capture))
        .route("/void", post(void))
        .route("/refund", post(refund))
        .route("/lookup", post(lookup))
        .with_state(sim)
}

async fn tokenize(State(sim): State<Simulator>, Body(r): Body<TokenizeRequest>) -> Response {
    let card = CardDetails {
        number: r.number,
        exp_month: r.exp_month,
        exp_year: r.exp_year,
        cvc: r.cvc,
    };
    respond(sim.tokenize(&card).await.map(|res| match res {
        Ok(card) => TokenizeResponse::Tokenized(card),
        Err(code) => TokenizeResponse::Declined { code },
    }))
}

async fn authorize(State(sim): State<Simulator>, Body(r): Body<AuthorizeRequest>) -> Response {
    respond(
        sim.authorize(&r.token, r.amount_minor, &r.currency, &r.reference)
            .await,
    )
}

async fn capture(State(sim): State<Simulator>, Body(r): Body<CaptureRequest>) -> Response {
    respond(
        sim.capture(&r.authorization_id, r.amount_minor)
            .await
            .map(|()| Done { ok: true }),
    )
}

async fn void(State(sim): State<Simulator>, Body(r): Body<VoidRequest>) -> Response {
    respond(
        sim.void(&r.authorization_id)
            .await
            .map(|()| Done { ok: true }),
    )
}

async fn refund(State(sim): State<Simulator>, Body(r): Body<RefundRequest>) -> Response {
    respond(
        sim.refund(&r.authorization_id, r.amount_minor, &r.reference)
            .await
            .map(|()| Done { ok: true }),
    )
}

async fn lookup(State(sim): State<Simulator>, Body(r): Body<LookupRequest>) -> Response {
    respond(
        sim.lookup(&r.reference)
            .await
            .map(|outcome| LookupResponse { outcome }),
    )
}

fn respond<T: Serialize>(result: Result<T, ProcessorError>) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(ProcessorError::Rejected(msg)) => error_response(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request_error",
            "rejected",
            msg,
        ),
        Err(ProcessorError::Unavailable(msg)) => error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "processor_error",
            msg,
        ),
        Err(ProcessorError::Timeout) => error_response(
            StatusCode::GATEWAY_TIMEOUT,
            "api_error",
            "timeout",
            "timed out".into(),
        ),
    }
}

fn error_response(status: StatusCode, kind: &str, code: &str, message: String) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            kind: kind.to_owned(),
            code: code.to_owned(),
            message,
        },
    };
    (status, Json(body)).into_response()
}

/// A JSON body whose rejection is a JSON error. The message never quotes the body: serde's own
/// messages can echo values, and on `/tokenize` the value could be a card number.
struct Body<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequest<S> for Body<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => {
                let (status, message) = match &rejection {
                    JsonRejection::JsonDataError(_) => (
                        StatusCode::BAD_REQUEST,
                        "request body has missing, unknown or mistyped fields",
                    ),
                    JsonRejection::JsonSyntaxError(_) => {
                        (StatusCode::BAD_REQUEST, "request body is not valid JSON")
                    }
                    JsonRejection::MissingJsonContentType(_) => (
                        rejection.status(),
                        "expected Content-Type: application/json",
                    ),
                    _ => (rejection.status(), "unreadable request body"),
                };
                Err(error_response(
                    status,
                    "invalid_request_error",
                    "invalid_body",
                    message.to_owned(),
                ))
            }
        }
    }
}
