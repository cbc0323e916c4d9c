//! The pages that links in security emails open, driven in headless Chromium through
//! ChromeDriver (WebDriver over HTTP): a customer clicks the revert link of a contact change,
//! and completes an account recovery from the recovery email. Needs Debian's `chromium` and
//! `chromium-driver` (scripts/test installs them); under CI=true their absence fails.

mod common;
use common::*;
use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn tools() -> Option<(String, String)> {
    let browser = std::env::var("KONBINI_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let driver =
        std::env::var("KONBINI_CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    if std::path::Path::new(&browser).exists() && std::path::Path::new(&driver).exists() {
        return Some((browser, driver));
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but Chromium or ChromeDriver is missing ({browser}, {driver})"
    );
    eprintln!("Chromium or ChromeDriver not found: skipping the page tests");
    None
}

/// A ChromeDriver process and one headless browser session.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    profile: std::path::PathBuf,
}

impl Drop for Browser {
    /// Ends the WebDriver session first (ChromeDriver then quits the browser it started;
    /// killing only ChromeDriver would leave Chromium running, orphaned), then stops
    /// ChromeDriver and removes the browser profile. Synchronous, so it also runs when a test
    /// panics.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let addr = self.base.trim_start_matches("http://").to_string();
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                s,
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    async fn start(browser: &str, driver: &str) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = std::env::temp_dir().join(format!("konbini-wd-{port}"));
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": browser,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-sync",
                     "--disable-component-update", format!("--user-data-dir={}", profile.display())]
        }}}});
        let r: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("json");
        let session = r["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
            .to_string();
        Browser {
            driver: child,
            base,
            session,
            http,
            profile,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let rq = match method {
            "GET" => self.http.get(url),
            _ => self.http.post(url).json(&body),
        };
        let r: Value = rq
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("json");
        assert!(r["value"].get("error").is_none(), "WebDriver {path}: {r}");
        r["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.call("POST", "/url", json!({"url": url})).await;
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .call(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        match v[ELEMENT].as_str() {
            Some(id) => id.to_string(),
            None => {
                let src = self.call("GET", "/source", Value::Null).await;
                panic!("no element {css} ({v}) in:\n{src}")
            }
        }
    }

    async fn click(&self, css: &str) {
        let e = self.element(css).await;
        self.call("POST", &format!("/element/{e}/click"), json!({}))
            .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.call(
            "POST",
            &format!("/element/{e}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// Waits until the page's status element reports an outcome; returns it and its text.
    async fn outcome(&self) -> (String, String) {
        for _ in 0..100 {
            let v = self
                .call(
                    "POST",
                    "/execute/sync",
                    json!({"script": "const r = document.getElementById('result'); return [r.dataset.outcome || '', r.textContent];", "args": []}),
                )
                .await;
            let outcome = v[0].as_str().unwrap_or("").to_string();
            if !outcome.is_empty() {
                return (outcome, v[1].as_str().unwrap_or("").to_string());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the page never reported an outcome");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_revert_link_undoes_a_contact_change_and_freezes_the_account() {
    let Some((browser, driver)) = tools() else {
        return;
    };
    let app = apps().await.into_iter().next().expect("an app");
    let c = app.customer("page-revert@example.com").await;
    let r = app
        .send("POST", "/v1/mfa/sms", Some(&c.token), None, None)
        .await;
    assert_eq!(r.status, 202);
    let code = app.sms_code(&c.phone, "confirmation code", 0).await;
    let r = app.send("POST", "/v1/contact-changes", Some(&c.token), None, Some(json!({"kind": "email", "value": "page-new@example.com", "factor": {"method": "sms", "code": code}}))).await;
    let verify = app
        .email_code("page-new@example.com", "confirmation code", 0)
        .await;
    let r = app
        .send(
            "POST",
            "/v1/contact-changes/verify",
            Some(&c.token),
            None,
            Some(json!({"change_id": r.body["change_id"], "code": verify})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let message = app.email(&c.email, "/revert#token=", 0).await;
    let token = link_token(&message, "/revert#token=");

    let b = Browser::start(&browser, &driver).await;
    // Opening the link changes nothing by itself (a link scanner must not freeze accounts).
    b.open(&format!("{}/revert#token={token}", app.base)).await;
    let w = app
        .send("GET", "/v1/wallet", Some(&c.token), None, None)
        .await;
    assert_eq!(w.status, 200, "the page did nothing before the click");
    b.click("#undo").await;
    let (outcome, text) = b.outcome().await;
    assert_eq!(outcome, "reverted", "{text}");
    let r = app
        .send(
            "POST",
            "/v1/sessions",
            None,
            None,
            Some(json!({"email": c.email, "password": c.password})),
        )
        .await;
    assert_error(app.label, &r, 403, "authentication_error", "account_frozen");
    // The same link again (a fresh page load): refused, and the page says so.
    b.open("about:blank").await;
    b.open(&format!("{}/revert#token={token}", app.base)).await;
    b.click("#undo").await;
    let (outcome, _) = b.outcome().await;
    assert_eq!(outcome, "refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recovery_link_resets_the_password_with_a_second_proof() {
    let Some((browser, driver)) = tools() else {
        return;
    };
    let app = apps().await.into_iter().next().expect("an app");
    let c = app.customer("page-recover@example.com").await;
    let r = app
        .send(
            "POST",
            "/v1/recovery",
            None,
            None,
            Some(json!({"identifier": c.email})),
        )
        .await;
    assert_eq!(r.status, 202);
    let message = app.email(&c.email, "recovery token", 0).await;
    let token = link_token(&message, "/recover#token=");
    let sms = app.sms_code(&c.phone, "recovery code", 0).await;

    let b = Browser::start(&browser, &driver).await;
    b.open(&format!("{}/recover#token={token}", app.base)).await;
    // A wrong code first: refused, nothing changes.
    b.type_into("#code", "000000").await;
    b.type_into("#password", "recovered on a sunny tuesday")
        .await;
    b.click("#submit").await;
    let (outcome, _) = b.outcome().await;
    assert_eq!(outcome, "refused");
    b.open("about:blank").await;
    b.open(&format!("{}/recover#token={token}", app.base)).await;
    b.type_into("#code", &sms).await;
    b.type_into("#password", "recovered on a sunny tuesday")
        .await;
    b.click("#submit").await;
    let (outcome, text) = b.outcome().await;
    assert_eq!(outcome, "recovered", "{text}");
    let r = app
        .send(
            "POST",
            "/v1/sessions",
            None,
            None,
            Some(json!({"email": c.email, "password": "recovered on a sunny tuesday"})),
        )
        .await;
    assert_eq!(
        r.status, 202,
        "the new password works (a second factor follows): {}",
        r.text
    );
    let w = app
        .send("GET", "/v1/wallet", Some(&c.token), None, None)
        .await;
    assert_eq!(w.status, 401, "the recovery signed every device out");
}
