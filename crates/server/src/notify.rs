//! The outbox dispatcher: turns events written by use cases into email (SMTP, via lettre)
//! and SMS (an HTTP gateway), with retries, backoff and a dead-letter list.
//!
//! Delivery is at least once: an event is claimed with a lease (so one node delivers it),
//! delivered, then marked; a node that dies mid-way lets the lease expire and another node
//! retries. Messages hold amounts, store ids and last-4 at most — never a full card number,
//! a code or a token — and links are built from the configured public URL only.

use crate::state::AppState;
use konbini_store::{customers, outbox};
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;
use std::time::Duration;

/// Events handled per sweep (bounds one sweep's work).
const BATCH: i64 = 50;
/// How long a claimed event is reserved for this node.
const LEASE_MS: i64 = 60_000;

/// One message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Email {
        to: String,
        subject: String,
        body: String,
    },
    Sms {
        to: String,
        body: String,
    },
}

/// The configured channels.
#[derive(Clone)]
pub struct Channels {
    mailer: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
    sms: Option<(reqwest::Client, String)>,
}

impl Channels {
    pub fn from_config(cfg: &crate::config::Config) -> Result<Channels, String> {
        let mailer = match &cfg.smtp_url {
            None => None,
            Some(url) => {
                let rest = url
                    .strip_prefix("smtp://")
                    .ok_or("smtp_url must look like smtp://host:port")?;
                let (host, port) = match rest.rsplit_once(':') {
                    Some((h, p)) => (
                        h.to_string(),
                        p.parse::<u16>().map_err(|_| "bad SMTP port")?,
                    ),
                    None => (rest.to_string(), 25),
                };
                let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
                    .port(port)
                    .timeout(Some(Duration::from_secs(10)))
                    .build();
                let from: Mailbox = cfg
                    .mail_from
                    .parse()
                    .map_err(|_| "mail_from is not an address")?;
                Some((transport, from))
            }
        };
        let sms = match &cfg.sms_url {
            None => None,
            Some(url) => {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .no_proxy()
                    .build()
                    .map_err(|e| e.to_string())?;
                Some((client, url.clone()))
            }
        };
        Ok(Channels { mailer, sms })
    }

    pub fn any(&self) -> bool {
        self.mailer.is_some() || self.sms.is_some()
    }

    async fn send(&self, d: &Delivery) -> Result<(), String> {
        match d {
            Delivery::Email { to, subject, body } => {
                let Some((transport, from)) = &self.mailer else {
                    return Err("no SMTP relay configured".into());
                };
                let to: Mailbox = to
                    .parse()
                    .map_err(|_| "recipient is not an address".to_string())?;
                let msg = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(subject.clone())
                    .body(body.clone())
                    .map_err(|e| format!("building the message: {e}"))?;
                transport
                    .send(msg)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("SMTP: {e}"))
            }
            Delivery::Sms { to, body } => {
                let Some((client, url)) = &self.sms else {
                    return Err("no SMS gateway configured".into());
                };
                let r = client
                    .post(url)
                    .json(&serde_json::json!({"to": to, "body": body}))
                    .send()
                    .await
                    .map_err(|_| "SMS gateway unreachable".to_string())?;
                if r.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("SMS gateway answered {}", r.status()))
                }
            }
        }
    }
}

/// `¥1,280` for JPY; other currencies as `1280 USD` minor units (the platform runs on JPY).
pub fn money(amount: i64, currency: &str) -> String {
    let digits = amount.unsigned_abs().to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if amount < 0 { "-" } else { "" };
    if currency == "JPY" {
        format!("{sign}¥{grouped}")
    } else {
        format!("{sign}{grouped} {currency} (minor units)")
    }
}

/// The messages an event becomes, for a customer with `email` and `phone`.
pub fn render(topic: &str, p: &Value, email: &str, phone: &str, public_url: &str) -> Vec<Delivery> {
    let amount = || {
        money(
            p["amount"].as_i64().unwrap_or(0),
            p["currency"].as_str().unwrap_or("JPY"),
        )
    };
    let not_you =
        "If this wasn't you, contact Konbini support at once: we will freeze the account.";
    let mail = |subject: String, body: String| Delivery::Email {
        to: email.to_string(),
        subject,
        body,
    };
    let sms = |body: String| Delivery::Sms {
        to: phone.to_string(),
        body,
    };
    match topic {
        "verification.code" => code_message(p, email, phone, public_url),
        "customer.verified" => vec![mail(
            "Welcome to Konbini".into(),
            format!("Your email address and phone are verified and your Konbini wallet is ready. Open it at {public_url}.\n\n{not_you}"),
        )],
        "customer.signup_attempt_on_existing_email" => vec![mail(
            "Someone tried to register with your address".into(),
            format!(
                "Someone tried to create a Konbini account with this email address, which already has one. Nothing was changed.\n\nIf it was you, sign in at {public_url} instead.\n\n{not_you}"
            ),
        )],
        "customer.signup_attempt_on_existing_phone" => vec![sms(format!(
            "Konbini: someone tried to register a new account with this phone number, which already has one. Nothing was changed. {not_you}"
        ))],
        "login.second_factor_required" => vec![mail(
            "Your password was used on a new device".into(),
            format!(
                "Someone signed in to your Konbini account with your password on a device that is not bound to it. The device cannot be used until a second factor is given.\n\nIf this wasn't you, your password is known to someone else: change it at {public_url}, and never share a code we send you.\n\n{not_you}"
            ),
        )],
        "recovery.completed" => vec![
            mail(
                "Your password was reset".into(),
                format!(
                    "Your Konbini password was reset through account recovery. Every device was signed out, and for the next 72 hours top-ups, card links and contact changes need a device signed in with an authenticator app, a passkey or a recovery code.\n\n{not_you}"
                ),
            ),
            sms(format!(
                "Konbini: your password was reset and every device signed out. {not_you}"
            )),
        ],
        "password.changed" => vec![
            mail(
                "Your password was changed".into(),
                format!("The password of your Konbini account was changed and your other sessions were ended.\n\n{not_you}"),
            ),
            sms(format!("Konbini: your password was changed. {not_you}")),
        ],
        "mfa.totp_enabled"
        | "mfa.totp_disabled"
        | "mfa.recovery_codes_regenerated"
        | "mfa.passkey_added"
        | "mfa.passkey_removed" => {
            let what = match topic {
                "mfa.totp_enabled" => "An authenticator app was added to",
                "mfa.totp_disabled" => "The authenticator app was removed from",
                "mfa.passkey_added" => "A passkey was added to",
                "mfa.passkey_removed" => "A passkey was removed from",
                _ => "New recovery codes were made for",
            };
            vec![
                mail(
                    "A sign-in factor changed".into(),
                    format!("{what} your Konbini account.\n\n{not_you}"),
                ),
                sms(format!("Konbini: {what} your account. {not_you}")),
            ]
        }
        "contact.change_reverted" => vec![
            mail(
                "Your account is frozen".into(),
                format!("A change of your contact details was undone with the link we sent, and the account was frozen and signed out everywhere. Contact Konbini support to reopen it.\n\n{not_you}"),
            ),
            sms("Konbini: a contact change was undone and your account is frozen. Contact support to reopen it.".to_string()),
        ],
        "customer.frozen" => vec![
            mail(
                "Your account is frozen".into(),
                "Konbini's security team froze your account to protect it: every device was signed out and payment codes no longer work. Contact Konbini support to reopen it.".into(),
            ),
            sms("Konbini: your account was frozen by our security team and signed out everywhere. Contact support to reopen it.".to_string()),
        ],
        "customer.unfrozen" => vec![
            mail(
                "Your account is open again".into(),
                format!("Konbini's security team reopened your account. Sign in again at {public_url}; each device needs a second factor to be bound again."),
            ),
            sms("Konbini: your account is open again; sign in with a second factor on each device.".to_string()),
        ],
        "device.bound" => vec![
            mail(
                "A new device signed in".into(),
                format!(
                    "A new device was bound to your Konbini account and can now show payment codes.\n\n{not_you}"
                ),
            ),
            sms(format!(
                "Konbini: a new device signed in to your account. {not_you}"
            )),
        ],
        "device.revoked" => vec![mail(
            "A device was removed".into(),
            format!(
                "A device was removed from your Konbini account; its payment codes no longer work.\n\n{not_you}"
            ),
        )],
        "card.linked" => vec![
            mail(
                "A card was linked".into(),
                format!("A payment card was linked to your Konbini wallet.\n\n{not_you}"),
            ),
            sms(format!(
                "Konbini: a card was linked to your wallet. {not_you}"
            )),
        ],
        "card.removed" => vec![mail(
            "A card was removed".into(),
            format!("A payment card was removed from your Konbini wallet.\n\n{not_you}"),
        )],
        "topup.succeeded" => vec![mail(
            format!("Top-up of {}", amount()),
            format!(
                "Your wallet was topped up with {} from your card.\n\n{not_you}",
                amount()
            ),
        )],
        "topup.failed" => vec![mail(
            "A top-up did not go through".into(),
            "A top-up of your wallet was declined; nothing was charged.".into(),
        )],
        "payment.succeeded" => vec![mail(
            format!("You paid {}", amount()),
            format!(
                "You paid {} at store {}.\n\n{not_you}",
                amount(),
                p["store_id"].as_str().unwrap_or("?")
            ),
        )],
        "payment.pending_confirmation" => vec![
            mail(
                format!("Confirm a payment of {}", amount()),
                format!(
                    "A payment of {} at store {} waits for your confirmation in the wallet ({public_url}). It expires in a minute.\n\n{not_you}",
                    amount(),
                    p["store_id"].as_str().unwrap_or("?")
                ),
            ),
            sms(format!(
                "Konbini: confirm a payment of {} in your wallet. {not_you}",
                amount()
            )),
        ],
        "refund.succeeded" => vec![mail(
            format!("Refund of {}", amount()),
            format!("{} was refunded to you.", amount()),
        )],
        "payment.canceled" => vec![mail(
            "A payment was canceled".into(),
            format!(
                "A payment of {} was canceled and the money returned.",
                amount()
            ),
        )],
        _ => Vec::new(),
    }
}

/// The message that carries a one-time code (`p["code"]`, filled in by the dispatcher) to
/// `p["to"]` or to the account's contact point of the channel.
fn code_message(p: &Value, email: &str, phone: &str, public_url: &str) -> Vec<Delivery> {
    let code = p["code"].as_str().unwrap_or("");
    let channel = p["channel"].as_str().unwrap_or("");
    let to = p["to"]
        .as_str()
        .unwrap_or(if channel == "email" { email } else { phone })
        .to_string();
    let never_share = "Never share it: Konbini staff will never ask for it.";
    let (subject, body) = match p["purpose"].as_str().unwrap_or("") {
        "email" => (
            "Your Konbini verification code",
            format!(
                "Your Konbini sign-up code is {code}. It expires in 10 minutes. {never_share}\n\nIf you did not sign up, ignore this message: nothing happens without the code."
            ),
        ),
        "phone" => (
            "",
            format!("Konbini: your sign-up code is {code}. {never_share}"),
        ),
        "login_sms" => (
            "",
            format!(
                "Konbini: your sign-in code is {code}. Someone signed in with your password on a new device; if it wasn't you, do not share this code and change your password. {never_share}"
            ),
        ),
        "step_up_sms" => (
            "",
            format!("Konbini: your confirmation code is {code}. {never_share}"),
        ),
        "recovery_email" => (
            "Recover your Konbini account",
            format!(
                "Someone asked to recover your Konbini account. Your recovery token is:\n\n{code}\n\nor open {public_url}/recover#token={code} in the app. It works once, within 15 minutes, together with the code sent to your phone.\n\nIf this wasn't you, ignore this message: nothing changes without it. {never_share}"
            ),
        ),
        "recovery_sms" => (
            "",
            format!(
                "Konbini: your account recovery code is {code}. If you did not ask to recover your account, ignore this. {never_share}"
            ),
        ),
        "contact_new" => (
            "Confirm your new Konbini contact address",
            format!(
                "Your Konbini confirmation code is {code}. It expires in 10 minutes. {never_share}"
            ),
        ),
        "contact_revert" => (
            "Your Konbini contact details were changed",
            format!(
                "The contact details of your Konbini account were changed, and messages now go to the new address. If this wasn't you, open {public_url}/revert#token={code} within 7 days: it undoes the change and freezes the account until support reopens it."
            ),
        ),
        _ => return Vec::new(),
    };
    if channel == "email" {
        vec![Delivery::Email {
            to,
            subject: subject.to_string(),
            body,
        }]
    } else {
        vec![Delivery::Sms { to, body }]
    }
}

/// Messages go only to verified contact points — except a code's own explicit destination
/// (the address being verified, or the old address of a change).
fn allowed(m: &Delivery, p: &Value, customer: &customers::Customer) -> bool {
    let explicit = p["to"].as_str();
    match m {
        Delivery::Email { to, .. } => {
            explicit == Some(to.as_str())
                || (*to == customer.email && customer.email_verified_ms.is_some())
        }
        Delivery::Sms { to, .. } => {
            explicit == Some(to.as_str())
                || (*to == customer.phone && customer.phone_verified_ms.is_some())
        }
    }
}

/// One sweep over the due events; returns how many were delivered.
pub async fn dispatch_once(
    state: &AppState,
    channels: &Channels,
) -> Result<usize, konbini_store::StoreError> {
    let now = state.now_ms();
    let due = state.db.read(move |c| outbox::due(c, now, BATCH)).await?;
    let mut delivered = 0;
    for ev in due {
        let id = ev.id.clone();
        let claimed = state
            .db
            .write(move |c| outbox::claim(c, &id, now, LEASE_MS))
            .await?;
        if !claimed {
            continue;
        }
        let mut payload: Value = serde_json::from_str(&ev.payload).unwrap_or(Value::Null);
        if ev.topic == "verification.code" {
            // The code exists only here, in memory, on its way to the customer.
            let id = payload["verification_id"].as_str().unwrap_or("");
            let form = crate::app::codes::form_of(payload["purpose"].as_str().unwrap_or(""));
            payload["code"] = Value::String(state.secret.one_time_code(id, form));
        }
        let customer_id = payload["customer_id"].as_str().map(str::to_string);
        let customer = match customer_id {
            Some(cid) => state.db.read(move |c| customers::by_id(c, &cid)).await?,
            None => None,
        };
        let messages = match &customer {
            Some(c) => render(
                &ev.topic,
                &payload,
                &c.email,
                &c.phone,
                &state.config.public_url,
            )
            .into_iter()
            .filter(|m| allowed(m, &payload, c))
            .collect(),
            None => Vec::new(),
        };
        let mut error = None;
        for m in &messages {
            if let Err(e) = channels.send(m).await {
                error = Some(e);
                break;
            }
        }
        let now = state.now_ms();
        let id = ev.id.clone();
        match error {
            None => {
                state
                    .db
                    .write(move |c| outbox::mark_delivered(c, &id, now))
                    .await?;
                delivered += 1;
            }
            Some(e) => {
                let attempts = ev.attempts + 1;
                let dead = attempts >= state.config.max_delivery_attempts;
                // 1 s, 2 s, 4 s, ... capped at an hour.
                let backoff_ms = 1000i64
                    .saturating_mul(1 << attempts.clamp(0, 12))
                    .min(3_600_000);
                tracing::warn!(event = %ev.id, topic = %ev.topic, attempts, dead, error = %e, "delivery failed");
                state
                    .db
                    .write(move |c| outbox::fail(c, &id, &e, now + backoff_ms, dead, now))
                    .await?;
            }
        }
    }
    Ok(delivered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_formats_yen() {
        assert_eq!(money(1_280, "JPY"), "¥1,280");
        assert_eq!(money(100, "JPY"), "¥100");
        assert_eq!(money(1_000_000, "JPY"), "¥1,000,000");
        assert_eq!(money(-5_000, "JPY"), "-¥5,000");
    }

    #[test]
    fn security_messages_go_to_email_and_phone() {
        let p = serde_json::json!({"customer_id": "cus_1", "device_id": "dev_1"});
        let m = render(
            "device.bound",
            &p,
            "a@example.com",
            "+819011112222",
            "https://pay.example.com",
        );
        assert_eq!(m.len(), 2);
        assert!(matches!(&m[1], Delivery::Sms { to, .. } if to == "+819011112222"));
        assert!(render("unknown.topic", &p, "a@example.com", "+81", "x").is_empty());
    }
}
