//! The API reference page (`/docs`) in headless Chromium: the page's script must fetch
//! `/openapi.json` and render every operation, with no network access beyond our server.
//! Needs Debian's `chromium` (scripts/test installs it); under CI=true its absence fails.

mod common;
use common::*;
use std::process::Command;

fn chromium() -> Option<String> {
    let path = std::env::var("KONBINI_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if std::path::Path::new(&path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but Chromium is missing at {path}"
    );
    eprintln!("Chromium not found at {path}: skipping the browser test");
    None
}

/// Renders `url` in headless Chromium and returns the DOM after scripts ran.
fn render(browser: &str, url: &str) -> String {
    let profile = std::env::temp_dir().join(format!("konbini-chromium-{}", std::process::id()));
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
            &format!("--user-data-dir={}", profile.display()),
            "--dump-dom",
            url,
        ])
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_page_renders_every_operation() {
    let Some(browser) = chromium() else { return };
    let app = apps().await.into_iter().next().expect("an app");
    let url = format!("{}/docs", app.base);
    let dom = tokio::task::spawn_blocking(move || render(&browser, &url))
        .await
        .expect("render");
    let operations = dom.matches("class=\"op\"").count();
    assert!(
        operations >= 20,
        "only {operations} operations rendered:\n{}",
        &dom[..dom.len().min(2000)]
    );
    for needle in [
        "/v1/pos/payments/{id}/refunds",
        "idempotency_key_reused",
        "insufficient_funds",
        "Idempotency-Key",
    ] {
        assert!(
            dom.contains(needle),
            "'{needle}' missing from the rendered page"
        );
    }
    assert!(
        !dom.contains("Loading /openapi.json"),
        "the page never finished loading"
    );
}
