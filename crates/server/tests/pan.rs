//! The card number (PAN) is never stored: after linking cards, topping up and paying, the
//! whole database is searched for the digits, on both backends. SQLite: the raw bytes of the
//! database file and its write-ahead log (so deleted rows and free pages count too).
//! PostgreSQL: every row of every table of the test schema, as JSON text.

mod common;
use common::*;
use konbini_store::{Backend, StoreError, params};
use serde_json::json;

/// Everything the database holds, as bytes to search.
async fn database_bytes(app: &TestApp) -> Vec<u8> {
    match app.db.backend() {
        Backend::Sqlite => {
            let url = app.url.strip_prefix("sqlite://").expect("sqlite url");
            let path = url.split('?').next().unwrap_or(url);
            let mut bytes = std::fs::read(path).expect("read the database file");
            // The WAL holds recent commits until a checkpoint copies them into the file.
            if let Ok(wal) = std::fs::read(format!("{path}-wal")) {
                bytes.extend_from_slice(&wal);
            }
            bytes
        }
        Backend::Postgres => {
            let tables: Vec<String> = app
                .db
                .read(|c| {
                    c.query(
                        "SELECT CAST(table_name AS TEXT) FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1",
                        params![],
                    )?
                    .iter()
                    .map(|r| r.text(0))
                    .collect::<Result<Vec<_>, StoreError>>()
                })
                .await
                .expect("list tables");
            for t in [
                "cards",
                "customers",
                "topups",
                "payments",
                "outbox",
                "activity",
                "idempotency",
            ] {
                assert!(
                    tables.iter().any(|x| x == t),
                    "{}: table {t} not among {tables:?}",
                    app.label
                );
            }
            let mut out = Vec::new();
            for t in tables {
                assert!(
                    t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                    "table name {t}"
                );
                // Conn::query takes &'static str (statements are prepared and cached): these few
                // per-table statements are leaked, in this test only.
                let sql: &'static str = Box::leak(
                    format!("SELECT CAST(row_to_json(t) AS TEXT) FROM {t} t").into_boxed_str(),
                );
                let rows = app
                    .db
                    .read(move |c| c.query(sql, params![]))
                    .await
                    .expect("dump table");
                for r in rows {
                    out.extend_from_slice(r.text(0).expect("row json").as_bytes());
                    out.push(b'\n');
                }
            }
            out
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn card_numbers_are_nowhere_in_the_database() {
    for app in apps().await {
        let l = app.label;
        let c = app.customer("pan@example.com").await;
        let visa = app.link_card(&c, "4242424242424242").await;
        let typed = app.send("POST", "/v1/cards", Some(&c.token), None, Some(json!({"number": "5555-5555-5555-4444", "exp_month": 12, "exp_year": 2030, "cvc": "987"}))).await;
        assert_eq!(typed.status, 201, "{l}: {}", typed.text);
        let mc = id_of(&typed);
        assert_eq!(app.top_up(&c, &visa, 5_000, "t1").await.status, 201, "{l}");
        assert_eq!(app.top_up(&c, &mc, 5_000, "t2").await.status, 201, "{l}");
        // A card that is declined, and one removed again, leave no number behind either.
        let declined = app.link_card(&c, "4000000000000002").await;
        assert_eq!(
            app.top_up(&c, &declined, 1_000, "t3").await.status,
            402,
            "{l}"
        );
        let removed = app.link_card(&c, "3566002020360505").await;
        assert_eq!(
            app.send(
                "DELETE",
                &format!("/v1/cards/{removed}"),
                Some(&c.token),
                None,
                None
            )
            .await
            .status,
            204,
            "{l}"
        );
        // A refused link with a Luhn-invalid number.
        let r = app.send("POST", "/v1/cards", Some(&c.token), None, Some(json!({"number": "4242424242424241", "exp_month": 12, "exp_year": 2030, "cvc": "123"}))).await;
        assert_eq!(r.status, 402, "{l}");
        // Card-funded POS payment and refund.
        let r = app
            .send(
                "PUT",
                "/v1/wallet/funding",
                Some(&c.token),
                None,
                Some(json!({"source": "card", "card_id": visa})),
            )
            .await;
        assert_eq!(r.status, 200, "{l}");
        let (_, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);
        // The order reference carries a canary: a 16-digit number the search must find.
        let canary = "5105105105105100";
        let p = app
            .send(
                "POST",
                "/v1/pos/payments",
                Some(&term),
                Some("p1"),
                Some(payment_body(
                    &app.offline_code(&c, 0),
                    700,
                    &format!("canary-{canary}"),
                )),
            )
            .await;
        assert_eq!(
            (p.status, p.body["funding"].as_str()),
            (201, Some("card")),
            "{l}: {}",
            p.text
        );
        let r = app
            .send(
                "POST",
                &format!("/v1/pos/payments/{}/refunds", id_of(&p)),
                Some(&term),
                Some("r1"),
                Some(json!({"amount": 100})),
            )
            .await;
        assert_eq!(r.status, 201, "{l}");

        let db = database_bytes(&app).await;
        // The search works: what is stored is found, the canary included.
        for present in [
            visa.as_str(),
            mc.as_str(),
            removed.as_str(),
            "4242",
            "4444",
            "pan@example.com",
            canary,
        ] {
            assert!(
                contains(&db, present),
                "{l}: the search should find {present:?} ({} bytes searched)",
                db.len()
            );
        }
        // The numbers are not, in any form.
        for pan in [
            "4242424242424242",
            "5555555555554444",
            "5555-5555-5555-4444",
            "4000000000000002",
            "3566002020360505",
            "4242424242424241",
        ] {
            assert!(!contains(&db, pan), "{l}: card number {pan} stored");
            assert!(
                !contains(&db, &hex(pan)),
                "{l}: card number {pan} stored as hex"
            );
            assert!(
                !contains(&db, &pan[..12]),
                "{l}: the first 12 digits of {pan} stored"
            );
        }
        assert!(!contains(&db, "\"987\""), "{l}: the cvc stored");
        app.ledger_ok().await;
    }
}
