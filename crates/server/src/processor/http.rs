//! The real network client for a remote processor speaking the simulator service's JSON protocol.

use std::time::Duration;

use reqwest::{Client, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::wire::{
    AuthorizeRequest, CaptureRequest, Done, ErrorBody, LookupRequest, LookupResponse,
    RefundRequest, TokenizeRequest, TokenizeResponse, VoidRequest,
};
use super::{AuthOutcome, CardDetails, DeclineCode, ProcessorError, TokenizedCard};

/// HTTP client for a remote processor; cheap to clone (the connection pool is shared).
#[derive(Clone, Debug)]
pub struct HttpProcessor {
    client: Client,
    base: Url,
}

impl HttpProcessor {
    /// `base_url` such as `http://127.0.0.1:7070/`; `timeout_ms` bounds both connecting and the whole
    /// request, after which the call fails with [`ProcessorError::Timeout`].
    pub fn new(base_url: &str, timeout_ms: u64) -> Result<Self, ProcessorError> {
        let unusable = |why: &str| ProcessorError::Unavailable(format!("processor URL: {why}"));
        let mut base = Url::parse(base_url).map_err(|_| unusable("not a valid URL"))?;
        // This build has no TLS stack; a TLS-terminating sidecar can sit in front of a remote processor.
        if base.scheme() != "http" {
            return Err(unusable("only http:// is supported"));
        }
        // So that `join("authorize")` appends to the path instead of replacing its last segment.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let timeout = Duration::from_millis(timeout_ms.max(1));
        let client = Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            // Card data goes straight to the processor: not through whatever proxy the environment
            // names, and not re-posted to wherever a redirect points.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| ProcessorError::Unavailable("cannot build the HTTP client".into()))?;
        Ok(Self { client, base })
    }

    pub(super) async fn tokenize(
        &self,
        card: &CardDetails,
    ) -> Result<Result<TokenizedCard, DeclineCode>, ProcessorError> {
        let req = TokenizeRequest {
            number: card.number.clone(),
            exp_month: card.exp_month,
            exp_year: card.exp_year,
            cvc: card.cvc.clone(),
        };
        Ok(match self.call("tokenize", &req).await? {
            TokenizeResponse::Tokenized(card) => Ok(card),
            TokenizeResponse::Declined { code } => Err(code),
        })
    }

    pub(super) async fn authorize(
        &self,
        token: &str,
        amount_minor: i64,
        currency: &str,
        reference: &str,
    ) -> Result<AuthOutcome, ProcessorError> {
        let req = AuthorizeRequest {
            token: token.to_owned(),
            amount_minor,
            currency: currency.to_owned(),
            reference: reference.to_owned(),
        };
        self.call("authorize", &req).await
    }

    pub(super) async fn capture(
        &self,
        authorization_id: &str,
        amount_minor: i64,
    ) -> Result<(), ProcessorError> {
        let req = CaptureRequest {
            authorization_id: authorization_id.to_owned(),
            amount_minor,
        };
        self.call::<_, Done>("capture", &req).await.map(drop)
    }

    pub(super) async fn void(&self, authorization_id: &str) -> Result<(), ProcessorError> {
        let req = VoidRequest {
            authorization_id: authorization_id.to_owned(),
        };
        self.call::<_, Done>("void", &req).await.map(drop)
    }

    pub(super) async fn refund(
        &self,
        authorization_id: &str,
        amount_minor: i64,
        reference: &str,
    ) -> Result<(), ProcessorError> {
        let req = RefundRequest {
            authorization_id: authorization_id.to_owned(),
            amount_minor,
            reference: reference.to_owned(),
        };
        self.call::<_, Done>("refund", &req).await.map(drop)
    }

    pub(super) async fn lookup(
        &self,
        reference: &str,
    ) -> Result<Option<AuthOutcome>, ProcessorError> {
        let req = LookupRequest {
            reference: reference.to_owned(),
        };
        Ok(self
            .call::<_, LookupResponse>("lookup", &req)
            .await?
            .outcome)
    }

    /// POSTs `body` as JSON to `base/path` and maps the answer: 2xx -> decoded body, 4xx -> `Rejected`,
    /// anything else or no answer -> `Unavailable`, out of time -> `Timeout`.
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        path: &'static str,
        body: &Req,
    ) -> Result<Resp, ProcessorError> {
        let url = self.base.join(path).map_err(|_| {
            ProcessorError::Unavailable("processor URL: cannot build the endpoint".into())
        })?;
        let response = self
            .client
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| transport_error(path, &e))?;
        let status = response.status();
        tracing::debug!(
            endpoint = path,
            status = status.as_u16(),
            "card processor answered"
        );
        if status.is_success() {
            return response
                .json::<Resp>()
                .await
                .map_err(|e| transport_error(path, &e));
        }
        let message = error_message(status, response.json::<ErrorBody>().await.ok());
        if status.is_client_error() {
            Err(ProcessorError::Rejected(message))
        } else {
            Err(ProcessorError::Unavailable(message))
        }
    }
}

/// Maps a reqwest error without its text: it would carry the URL and lower-level details, and our own
/// words are enough to act on.
fn transport_error(path: &str, e: &reqwest::Error) -> ProcessorError {
    let err = if e.is_timeout() {
        ProcessorError::Timeout
    } else if e.is_connect() {
        ProcessorError::Unavailable("cannot connect to the processor".into())
    } else if e.is_decode() {
        ProcessorError::Unavailable("malformed response from the processor".into())
    } else {
        ProcessorError::Unavailable("request to the processor failed".into())
    };
    tracing::warn!(endpoint = path, error = %err, "card processor call failed");
    err
}

/// The processor's own message when it sent one, made safe to log and show: bounded in length, and a
/// processor that echoes a card number back does not get it into our logs.
fn error_message(status: StatusCode, body: Option<ErrorBody>) -> String {
    match body {
        Some(b) => redact_digit_runs(&b.error.message.chars().take(200).collect::<String>()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// Replaces every run of 8 or more digits (spaces and dashes allowed inside) with `[redacted]`.
pub(super) fn redact_digit_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let mut digits = 0;
    let flush = |out: &mut String, run: &mut String, digits: &mut usize| {
        if *digits >= 8 {
            // Keep a trailing separator so the text around the number still reads.
            let trailing: String = run
                .chars()
                .rev()
                .take_while(|c| !c.is_ascii_digit())
                .collect();
            out.push_str("[redacted]");
            out.extend(trailing.chars().rev());
        } else {
            out.push_str(run);
        }
        run.clear();
        *digits = 0;
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            run.push(c);
            digits += 1;
        } else if (c == ' ' || c == '-') && digits > 0 {
            run.push(c);
        } else {
            flush(&mut out, &mut run, &mut digits);
            out.push(c);
        }
    }
    flush(&mut out, &mut run, &mut digits);
    out
}
