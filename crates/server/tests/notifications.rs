//! Messages reach real sinks: an SMTP server on a local socket (speaking the protocol to
//! lettre) and an HTTP SMS gateway. Security events go to the verified email and phone, money
//! movements are reported, failures are retried with backoff, and a message that never gets
//! through lands in the dead-letter list. No message carries a card number.

mod common;
use common::*;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One received message: (recipients, raw data).
type Received = (Vec<String>, String);

/// A minimal SMTP sink: accepts every message and keeps it.
#[derive(Clone, Default)]
struct SmtpSink(Arc<Mutex<Vec<Received>>>);

impl SmtpSink {
    async fn start() -> (SmtpSink, String) {
        let sink = SmtpSink::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("smtp://{}", listener.local_addr().expect("addr"));
        let s = sink.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let s = s.clone();
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let _ = w.write_all(b"220 sink ESMTP\r\n").await;
                    let mut rcpt = Vec::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let upper = line.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO")
                        {
                            b"250-sink\r\n250 8BITMIME\r\n"
                        } else if upper.starts_with("RCPT TO:") {
                            rcpt.push(
                                line[8..]
                                    .trim()
                                    .trim_matches(|c| c == '<' || c == '>')
                                    .to_string(),
                            );
                            b"250 ok\r\n"
                        } else if upper.starts_with("DATA") {
                            let _ = w.write_all(b"354 go ahead\r\n").await;
                            let mut data = String::new();
                            while let Ok(Some(l)) = lines.next_line().await {
                                if l == "." {
                                    break;
                                }
                                data.push_str(&l);
                                data.push('\n');
                            }
                            if let Ok(mut v) = s.0.lock() {
                                v.push((std::mem::take(&mut rcpt), data));
                            }
                            b"250 queued\r\n"
                        } else if upper.starts_with("QUIT") {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            break;
                        } else {
                            b"250 ok\r\n"
                        };
                        let _ = w.write_all(reply).await;
                    }
                });
            }
        });
        (sink, url)
    }

    fn to(&self, addr: &str) -> Vec<String> {
        self.0
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|(r, _)| r.iter().any(|x| x == addr))
                    .map(|(_, d)| d.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// An HTTP SMS gateway that fails the first `fail_first` requests with 500.
#[derive(Clone)]
struct SmsSink {
    got: Arc<Mutex<Vec<Value>>>,
    fail_first: Arc<Mutex<usize>>,
}

impl SmsSink {
    async fn start(fail_first: usize) -> (SmsSink, String) {
        let sink = SmsSink {
            got: Arc::default(),
            fail_first: Arc::new(Mutex::new(fail_first)),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/send", listener.local_addr().expect("addr"));
        let s = sink.clone();
        let app = axum::Router::new().route(
            "/send",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let s = s.clone();
                async move {
                    let mut left = s.fail_first.lock().expect("lock");
                    if *left > 0 {
                        *left -= 1;
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    s.got.lock().expect("lock").push(v);
                    axum::http::StatusCode::OK
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (sink, url)
    }

    fn to(&self, phone: &str) -> Vec<String> {
        self.got
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|m| m["to"] == phone)
                    .map(|m| m["body"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_reach_the_customer_and_failures_are_retried() {
    let (mail, smtp_url) = SmtpSink::start().await;
    // The gateway fails twice before accepting: the dispatcher must retry.
    let (sms, sms_url) = SmsSink::start(2).await;
    let apps = apps_with(move |c| {
        c.smtp_url = Some(smtp_url.clone());
        c.sms_url = Some(sms_url.clone());
        c.dispatch_interval_ms = 20;
        c.public_url = "https://pay.example.com".into();
    })
    .await;
    for app in apps {
        let l = app.label;
        // Each backend gets a fresh gateway history and two failures to retry through.
        sms.got.lock().expect("lock").clear();
        *sms.fail_first.lock().expect("lock") = 2;
        let email = format!("notify-{l}@example.com");
        let (c, _) = app.funded_customer(&email, 5_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        let p = app.pay(&term, &app.offline_code(&c, 0), 1_280, "n1").await;
        assert_eq!(p.body["status"], "succeeded", "{l}");
        // Email: welcome (with the configured public URL), new device, card linked, top-up, payment.
        eventually("the emails", || mail.to(&email).len() >= 5).await;
        let all = mail.to(&email).join("\n---\n");
        for needle in [
            "Welcome to Konbini",
            "https://pay.example.com",
            "A new device",
            "A card was linked",
            "Top-up of",
            "You paid",
            "1,280",
        ] {
            assert!(all.contains(needle), "{l}: '{needle}' missing from:\n{all}");
        }
        assert!(
            !all.contains("4242424242424242"),
            "{l}: a card number in an email"
        );
        // SMS to the phone on the account for the security events, despite the failures.
        // The backoff after each failure is 2 s, 4 s: move the clock instead of waiting.
        for _ in 0..6 {
            if sms.to("+819012345678").len() >= 2 {
                break;
            }
            app.clock.advance_ms(5_000);
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let texts = sms.to("+819012345678");
        assert!(
            texts.iter().any(|t| t.contains("new device")),
            "{l}: {texts:?}"
        );
        assert!(
            texts.iter().any(|t| t.contains("card was linked")),
            "{l}: {texts:?}"
        );
        let retried: i64 = app
            .count("SELECT CAST(COALESCE(MAX(attempts), 0) AS BIGINT) FROM outbox")
            .await;
        assert!(
            retried >= 2,
            "{l}: the failed SMS was retried (max attempts {retried})"
        );
        let mut pending = 1;
        for _ in 0..40 {
            pending = app
                .count("SELECT COUNT(*) FROM outbox WHERE delivered_ms IS NULL")
                .await;
            if pending == 0 {
                break;
            }
            app.clock.advance_ms(5_000);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(pending, 0, "{l}: undelivered events left");
        // The sign-up of an already registered address tells the owner, not the requester.
        let r = app.send("POST", "/v1/signup", None, None, Some(json!({"email": email, "phone": "+819099998888", "password": "another long passphrase here"}))).await;
        assert_eq!(r.status, 202, "{l}");
        eventually("the warning to the owner", || {
            mail.to(&email).join("").contains("tried to register")
        })
        .await;
        assert!(
            sms.to("+819099998888").is_empty(),
            "{l}: nothing goes to the requester's number"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeliverable_messages_end_in_the_dead_letter_list() {
    let (_sms, sms_url) = SmsSink::start(usize::MAX).await;
    let (_mail, smtp_url) = SmtpSink::start().await;
    let apps = apps_with(move |c| {
        c.smtp_url = Some(smtp_url.clone());
        c.sms_url = Some(sms_url.clone());
        c.dispatch_interval_ms = 20;
        c.max_delivery_attempts = 3;
    })
    .await;
    for app in apps {
        let l = app.label;
        let _c = app.customer(&format!("dead-{l}@example.com")).await;
        let mut dead = 0;
        for _ in 0..40 {
            dead = app.count("SELECT COUNT(*) FROM outbox WHERE dead_ms IS NOT NULL AND topic = 'device.bound'").await;
            if dead == 1 {
                break;
            }
            app.clock.advance_ms(20_000);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            dead, 1,
            "{l}: the device.bound message (email + SMS) is dead-lettered"
        );
        let attempts = app
            .count("SELECT attempts FROM outbox WHERE topic = 'device.bound'")
            .await;
        assert_eq!(attempts, 3, "{l}");
        let listed = app
            .db
            .read(|c| konbini_store::outbox::dead(c, 10))
            .await
            .expect("dead list");
        assert!(
            listed
                .iter()
                .any(|(e, err)| e.topic == "device.bound"
                    && err.contains("SMS gateway answered 500")),
            "{l}: {listed:?}"
        );
    }
}
