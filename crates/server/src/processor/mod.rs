//! The card-processor interface: card tokenization, authorize/capture/void/refund, and lookup after a
//! timeout. Two implementations sit behind [`Processor`]: the in-process [`Simulator`] (which plays the
//! acquirer and the bank, with documented [`TEST_CARDS`]) and [`HttpProcessor`], the real network client,
//! which can talk to the simulator served by [`simulator_router`] so that timeouts and failures are
//! exercised over a real socket.
//!
//! Card numbers (PANs) only ever travel from [`CardDetails`] to the processor: they are redacted in
//! `Debug`/`Display`, never logged, never put in URLs or error messages.

use std::fmt;

use serde::{Deserialize, Serialize};

mod http;
mod simulator;
#[cfg(test)]
mod tests;

pub use http::HttpProcessor;
pub use simulator::{Simulator, simulator_router};

/// Card data as typed by the customer (spaces and dashes in the number are allowed).
///
/// `Debug` and `Display` redact the number and the cvc; there is deliberately no `Serialize`, so the
/// card cannot end up in a log line or a stored JSON document by accident.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardDetails {
    pub number: String,
    pub exp_month: u32,
    pub exp_year: u32,
    pub cvc: String,
}

impl CardDetails {
    /// `****4242`, or `****` when the input is too short to be a card number (showing four digits of a
    /// short string would reveal most of it).
    fn masked(&self) -> String {
        let digits: Vec<char> = self.number.chars().filter(char::is_ascii_digit).collect();
        if digits.len() < 12 {
            return "****".to_owned();
        }
        let last4: String = digits[digits.len() - 4..].iter().collect();
        format!("****{last4}")
    }
}

impl fmt::Debug for CardDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardDetails {{ number: {}, .. }}", self.masked())
    }
}

impl fmt::Display for CardDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// What the processor hands back for a card: safe to store and show.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TokenizedCard {
    pub token: String,
    pub brand: String,
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeclineCode {
    CardDeclined,
    InsufficientFunds,
    ExpiredCard,
    InvalidCard,
}

impl DeclineCode {
    /// The snake_case name, as on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::CardDeclined => "card_declined",
            Self::InsufficientFunds => "insufficient_funds",
            Self::ExpiredCard => "expired_card",
            Self::InvalidCard => "invalid_card",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthOutcome {
    Approved { authorization_id: String },
    Declined { code: DeclineCode },
}

/// A failure to get an answer (as opposed to a decline, which is an answer).
///
/// After `Timeout` (and, to be safe, after `Unavailable`) the outcome of an `authorize` is unknown:
/// call [`Processor::lookup`] or retry with the same reference, which never authorizes twice.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error("processor timed out")]
    Timeout,
    #[error("processor unavailable: {0}")]
    Unavailable(String),
    #[error("processor rejected the request: {0}")]
    Rejected(String),
}

/// The processor the server talks to: the in-process simulator (default) or a remote one over HTTP.
#[derive(Clone, Debug)]
pub enum Processor {
    Simulator(Simulator),
    Http(HttpProcessor),
}

impl Processor {
    /// Sends the card to the processor; `Ok(Err(code))` is a decline (invalid number, expired, ...).
    pub async fn tokenize(
        &self,
        card: &CardDetails,
    ) -> Result<Result<TokenizedCard, DeclineCode>, ProcessorError> {
        match self {
            Self::Simulator(s) => s.tokenize(card).await,
            Self::Http(h) => h.tokenize(card).await,
        }
    }

    /// `reference` is the caller's idempotency reference: the same reference always returns the same
    /// outcome (so a timed-out call can be retried safely) and never authorizes twice. Reusing a
    /// reference with different parameters is `Rejected`.
    pub async fn authorize(
        &self,
        token: &str,
        amount_minor: i64,
        currency: &str,
        reference: &str,
    ) -> Result<AuthOutcome, ProcessorError> {
        match self {
            Self::Simulator(s) => s.authorize(token, amount_minor, currency, reference).await,
            Self::Http(h) => h.authorize(token, amount_minor, currency, reference).await,
        }
    }

    /// Captures up to the authorized amount, once; repeating the same capture is a no-op.
    pub async fn capture(
        &self,
        authorization_id: &str,
        amount_minor: i64,
    ) -> Result<(), ProcessorError> {
        match self {
            Self::Simulator(s) => s.capture(authorization_id, amount_minor).await,
            Self::Http(h) => h.capture(authorization_id, amount_minor).await,
        }
    }

    /// Releases an uncaptured authorization; idempotent.
    pub async fn void(&self, authorization_id: &str) -> Result<(), ProcessorError> {
        match self {
            Self::Simulator(s) => s.void(authorization_id).await,
            Self::Http(h) => h.void(authorization_id).await,
        }
    }

    /// Idempotent per reference; never refunds more than captured (`Rejected`).
    pub async fn refund(
        &self,
        authorization_id: &str,
        amount_minor: i64,
        reference: &str,
    ) -> Result<(), ProcessorError> {
        match self {
            Self::Simulator(s) => s.refund(authorization_id, amount_minor, reference).await,
            Self::Http(h) => h.refund(authorization_id, amount_minor, reference).await,
        }
    }

    /// Looks up what happened to an authorization by reference (after a timeout). None = the processor
    /// never saw it.
    pub async fn lookup(&self, reference: &str) -> Result<Option<AuthOutcome>, ProcessorError> {
        match self {
            Self::Simulator(s) => s.lookup(reference).await,
            Self::Http(h) => h.lookup(reference).await,
        }
    }
}

/// Documented test cards, for docs and the demo: (number, what it does). Any expiry in the future and
/// any 3-digit cvc work; any other valid (Luhn) number is approved.
pub const TEST_CARDS: &[(&str, &str)] = &[
    ("4242424242424242", "Visa, approved"),
    ("5555555555554444", "Mastercard, approved"),
    ("3566002020360505", "JCB, approved"),
    ("4000000000000002", "declined: card_declined"),
    ("4000000000009995", "declined: insufficient_funds"),
    ("4000000000000069", "authorization declined: expired_card"),
    (
        "4000000000000119",
        "authorization fails with a processor error (HTTP 500 from the service)",
    ),
    (
        "4000000000006975",
        "slow: authorization stalls for the configured delay, then is approved",
    ),
];

/// JSON bodies of the simulator service, shared by the service and the client so they cannot drift.
/// Requests reject unknown fields; responses are read leniently (a processor may add fields).
mod wire {
    use serde::{Deserialize, Serialize};

    use super::{AuthOutcome, DeclineCode, TokenizedCard};

    // No Debug: this carries the card number.
    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct TokenizeRequest {
        pub number: String,
        pub exp_month: u32,
        pub exp_year: u32,
        pub cvc: String,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub(super) enum TokenizeResponse {
        Tokenized(TokenizedCard),
        Declined { code: DeclineCode },
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct AuthorizeRequest {
        pub token: String,
        pub amount_minor: i64,
        pub currency: String,
        pub reference: String,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct CaptureRequest {
        pub authorization_id: String,
        pub amount_minor: i64,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct VoidRequest {
        pub authorization_id: String,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct RefundRequest {
        pub authorization_id: String,
        pub amount_minor: i64,
        pub reference: String,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub(super) struct LookupRequest {
        pub reference: String,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct LookupResponse {
        pub outcome: Option<AuthOutcome>,
    }

    /// Body of capture/void/refund answers.
    #[derive(Serialize, Deserialize)]
    pub(super) struct Done {
        pub ok: bool,
    }

    /// `{"error": {"type", "code", "message"}}`, as in the public API.
    #[derive(Serialize, Deserialize)]
    pub(super) struct ErrorBody {
        pub error: ErrorDetail,
    }

    #[derive(Serialize, Deserialize)]
    pub(super) struct ErrorDetail {
        #[serde(rename = "type")]
        pub kind: String,
        pub code: String,
        pub message: String,
    }
}
