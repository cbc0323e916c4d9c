//! Local message sinks for development, the demo and tests: an SMTP server that keeps every
//! message it is given (speaking enough of the protocol for lettre), and an HTTP SMS gateway
//! that keeps every `{"to", "body"}` it is posted. Real sockets, real protocols: the
//! dispatcher cannot tell them from a mail relay and an SMS provider. Not for production.

use serde_json::Value;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// One message received over SMTP.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    /// The raw DATA (headers and body).
    pub data: String,
}

/// An SMTP server on a local port that accepts every message.
#[derive(Clone, Default)]
pub struct MailSink(Arc<Mutex<Vec<Mail>>>);

impl MailSink {
    /// Starts the sink; returns it with its `smtp://127.0.0.1:port` URL.
    pub async fn start() -> std::io::Result<(MailSink, String)> {
        let sink = MailSink::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("smtp://{}", listener.local_addr()?);
        let s = sink.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve_smtp(sock, s.clone()));
            }
        });
        Ok((sink, url))
    }

    /// Every message received so far.
    pub fn all(&self) -> Vec<Mail> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Every message addressed to `addr`, as readable text (quoted-printable undone).
    pub fn to(&self, addr: &str) -> Vec<String> {
        self.all()
            .into_iter()
            .filter(|m| m.to.iter().any(|x| x == addr))
            .map(|m| m.text())
            .collect()
    }
}

impl Mail {
    /// Headers as sent, then the body with quoted-printable soft line breaks and `=XX`
    /// escapes decoded (lettre encodes long lines so; a code or link may otherwise be split).
    /// The headers are left alone: their encoded words end in `?=`, which is no escape.
    pub fn text(&self) -> String {
        let data = self.data.replace("\r\n", "\n");
        match data.split_once("\n\n") {
            Some((head, body)) => format!("{head}\n\n{}", quoted_printable(body)),
            None => data,
        }
    }

    /// The Subject header as a reader sees it: unfolded, its RFC 2047 encoded words
    /// (`=?utf-8?b?wqU1LDAwMA==?=`, which lettre writes for `¥5,000`) decoded.
    pub fn subject(&self) -> String {
        let data = self.data.replace("\r\n", "\n");
        let head = data.split_once("\n\n").map_or(data.as_str(), |(h, _)| h);
        let mut subject: Option<String> = None;
        for line in head.lines() {
            match &mut subject {
                Some(s) if line.starts_with([' ', '\t']) => s.push_str(line),
                Some(_) => break,
                None => {
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("subject")
                    {
                        subject = Some(value.trim_start().to_string());
                    }
                }
            }
        }
        decode_encoded_words(&subject.unwrap_or_default())
    }
}

fn quoted_printable(body: &str) -> String {
    let joined = body.replace("=\n", "");
    let b = joined.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'='
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes RFC 2047 encoded words (`=?charset?b|q?text?=`, UTF-8 assumed); whitespace
/// between two encoded words is dropped, as the RFC says. Anything malformed stays as it is.
fn decode_encoded_words(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    let mut after_word = false;
    while let Some(i) = rest.find("=?") {
        let (before, word) = rest.split_at(i);
        if !(after_word && before.trim().is_empty()) {
            out.push_str(before);
        }
        match encoded_word(&word[2..]) {
            Some((text, used)) => {
                out.push_str(&text);
                rest = &word[2 + used..];
                after_word = true;
            }
            None => {
                out.push_str("=?");
                rest = &word[2..];
                after_word = false;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `charset?enc?text?=…` → the decoded text and the bytes it used.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let (_charset, rest) = s.split_once('?')?;
    let (enc, rest) = rest.split_once('?')?;
    let end = rest.find("?=")?;
    let text = &rest[..end];
    let bytes = match enc {
        "b" | "B" => konbini_core::encoding::unbase64(text)?,
        "q" | "Q" => quoted_printable(&text.replace('_', " ")).into_bytes(),
        _ => return None,
    };
    let used = s.len() - rest.len() + end + 2;
    Some((String::from_utf8_lossy(&bytes).into_owned(), used))
}

async fn serve_smtp(sock: tokio::net::TcpStream, sink: MailSink) {
    let (r, mut w) = sock.into_split();
    let mut lines = BufReader::new(r).lines();
    let _ = w.write_all(b"220 sink ESMTP\r\n").await;
    let mut rcpt = Vec::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
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
            if let Ok(mut v) = sink.0.lock() {
                v.push(Mail {
                    to: std::mem::take(&mut rcpt),
                    data,
                });
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
}

/// An HTTP SMS gateway on a local port. It can be told to fail the next requests with 500
/// (to exercise retries).
#[derive(Clone, Default)]
pub struct SmsSink {
    got: Arc<Mutex<Vec<Value>>>,
    fail_next: Arc<Mutex<usize>>,
}

impl SmsSink {
    /// Starts the gateway; returns it with its `http://127.0.0.1:port/send` URL.
    pub async fn start() -> std::io::Result<(SmsSink, String)> {
        let sink = SmsSink::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/send", listener.local_addr()?);
        let s = sink.clone();
        let app = axum::Router::new().route(
            "/send",
            axum::routing::post(move |axum::Json(v): axum::Json<Value>| {
                let s = s.clone();
                async move {
                    if let Ok(mut left) = s.fail_next.lock()
                        && *left > 0
                    {
                        *left -= 1;
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    if let Ok(mut got) = s.got.lock() {
                        got.push(v);
                    }
                    axum::http::StatusCode::OK
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok((sink, url))
    }

    /// Fails the next `n` requests with 500.
    pub fn fail_next(&self, n: usize) {
        if let Ok(mut left) = self.fail_next.lock() {
            *left = n;
        }
    }

    /// Every `{"to", "body"}` received so far.
    pub fn all(&self) -> Vec<Value> {
        self.got.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The bodies of the texts sent to `phone`.
    pub fn to(&self, phone: &str) -> Vec<String> {
        self.all()
            .iter()
            .filter(|m| m["to"] == phone)
            .map(|m| m["body"].as_str().unwrap_or("").to_string())
            .collect()
    }

    pub fn clear(&self) {
        if let Ok(mut v) = self.got.lock() {
            v.clear();
        }
    }
}

/// The first run of `digits` ASCII digits that stands alone (not part of a longer number)
/// after "code is " in `text`, or anywhere when the text has no such phrase: how a person
/// reads a code out of a message.
pub fn find_code(text: &str, digits: usize) -> Option<String> {
    // Every message that carries a code says "code is <code>"; what comes before it (the
    // email's headers: addresses, message ids) can hold digit runs of its own, and reading one
    // of those made the demo fail now and then.
    match text.find("code is ") {
        Some(i) => first_digit_run(&text[i + "code is ".len()..], digits),
        None => first_digit_run(text, digits),
    }
}

fn first_digit_run(text: &str, digits: usize) -> Option<String> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i - start == digits {
                return Some(text[start..i].to_string());
            }
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{Mail, find_code};

    #[test]
    fn a_subject_is_unfolded_and_decoded_and_the_body_unescaped() {
        let mail = Mail {
            to: vec!["a@example.com".into()],
            data: "From: Konbini <no-reply@konbini.example>\r\nSubject: Top-up of\r\n =?utf-8?b?wqU1LDAwMA==?=\r\n\
                   Content-Transfer-Encoding: quoted-printable\r\n\r\n\
                   Your wallet was topped up with =C2=A55,000 from your=\r\n card.\r\n"
                .into(),
        };
        assert_eq!(mail.subject(), "Top-up of ¥5,000");
        let text = mail.text();
        assert!(
            text.contains("Subject: Top-up of\n =?utf-8?b?wqU1LDAwMA==?=\n"),
            "{text}"
        );
        assert!(
            text.ends_with("topped up with ¥5,000 from your card.\n"),
            "{text}"
        );
        let two = Mail {
            to: vec![],
            data: "Subject: =?utf-8?q?caf=C3=A9?= =?utf-8?b?wqU=?= and =?bogus\n\nbody".into(),
        };
        assert_eq!(two.subject(), "café¥ and =?bogus");
    }

    #[test]
    fn a_code_is_read_after_its_phrase_not_from_the_headers() {
        let mail = "To: demo-123456@example.com\nMessage-ID: <ab654321cd@host>\n\n\
                    Your Konbini sign-up code is 042917. It expires in 10 minutes.";
        assert_eq!(find_code(mail, 6).as_deref(), Some("042917"));
        assert_eq!(
            find_code("token:\n\n987654\n", 6).as_deref(),
            Some("987654")
        );
        assert_eq!(
            find_code("code is 1234567", 6),
            None,
            "a longer number is no code"
        );
    }
}
