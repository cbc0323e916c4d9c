//! The admin API for risk, over HTTP against the real server on SQLite and PostgreSQL: a rule
//! tried in shadow mode changes nothing but is journaled, switched live it acts, and a
//! backtest counts what it would have changed; rules are checked (line:column), versioned and
//! audited; roles are enforced; cases are explained, assigned and resolved, and fraud freezes
//! the customer everywhere.

mod common;
use common::*;
use konbini_server::secrets::MasterSecret;
use serde_json::{Value, json};

const RULES: &str = "/v1/admin/risk/rules";
const BACKTEST: &str = "/v1/admin/risk/backtest";
const CASES: &str = "/v1/admin/risk/cases";

/// A staff member signed in: (staff id, session token).
struct Staff {
    id: String,
    token: String,
}

/// Creates a staff member (as `konbini staff add` does) and signs in with the password and
/// the current TOTP code computed from the enrolled secret.
async fn staff(app: &TestApp, email: &str, role: &str) -> Staff {
    // The harness's master secret (see common::start).
    let secret = MasterSecret::new(vec![7u8; 32]).expect("secret");
    let (db, s, now) = (app.db.clone(), secret.clone(), app.clock_ms());
    let (email_owned, role_owned) = (email.to_string(), role.to_string());
    let created = tokio::task::spawn_blocking(move || {
        konbini_server::app::staff::create(&db, &s, &email_owned, "Staff", &role_owned, now)
    })
    .await
    .expect("join")
    .expect("create staff");
    assert!(created.totp_uri.starts_with("otpauth://totp/"));
    let code =
        konbini_core::totp::code_at(&secret.staff_totp_secret(&created.id, 1), app.clock_ms());
    let r = app
        .send(
            "POST",
            "/v1/admin/sessions",
            None,
            None,
            Some(json!({"email": email, "password": created.password, "totp": code})),
        )
        .await;
    assert_eq!(r.status, 201, "{}: staff login {}", app.label, r.text);
    Staff {
        id: created.id,
        token: r.body["token"].as_str().expect("token").to_string(),
    }
}

fn rule(name: &str, source: &str, mode: &str) -> Value {
    json!({"name": name, "description": "a test rule", "source": source, "priority": 900, "mode": mode})
}

const BIG_PAYMENTS: &str = "block when event.kind == \"payment\" and payment.amount > 700";

/// The customer's journaled decisions, newest first.
async fn decisions(app: &TestApp, customer_id: &str) -> Vec<konbini_store::risk::DecisionRecord> {
    let id = customer_id.to_string();
    app.db
        .read(move |c| konbini_store::risk::decisions_of(c, &id, 100))
        .await
        .expect("decisions")
}

/// Every audit action, oldest first.
async fn audit_actions(app: &TestApp) -> Vec<String> {
    app.db
        .read(|c| {
            c.query(
                "SELECT action FROM audit_log ORDER BY seq",
                konbini_store::params![],
            )?
            .iter()
            .map(|r| r.text(0))
            .collect::<Result<Vec<_>, _>>()
        })
        .await
        .expect("audit actions")
}

async fn audit_ok(app: &TestApp) {
    let report = app
        .db
        .read(konbini_store::audit::verify)
        .await
        .expect("verify");
    assert!(
        report.problems.is_empty(),
        "{}: {:?}",
        app.label,
        report.problems
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_rule_is_journaled_only_until_it_goes_live_and_the_backtest_counts_it() {
    for app in apps().await {
        let l = app.label;
        let analyst = staff(&app, &format!("analyst-{l}@example.com"), "analyst").await;
        let a = Some(analyst.token.as_str());
        let (c, _) = app
            .funded_customer(&format!("shadow-{l}@example.com"), 5_000)
            .await;
        let (_, term) = app.store_with_terminal("st_shadow").await;
        // The window of the backtest starts after the top-ups.
        app.clock.advance_ms(1_000);
        let from_ms = app.clock_ms();

        // In shadow mode the rule changes nothing, but the journal shows it fired.
        let r = app
            .send(
                "POST",
                RULES,
                a,
                None,
                Some(rule("big_payments", BIG_PAYMENTS, "shadow")),
            )
            .await;
        assert_eq!(r.status, 201, "{l}: {}", r.text);
        assert_eq!(
            (&r.body["version"], &r.body["mode"], &r.body["enabled"]),
            (&json!(1), &json!("shadow"), &json!(true)),
            "{l}: {}",
            r.text
        );
        assert_eq!(r.body["updated_by"], json!(analyst.id), "{l}");
        let p = app.pay(&term, &app.offline_code(&c, 0), 800, "sh-1").await;
        assert_eq!(
            (p.status, p.body["status"].as_str()),
            (201, Some("succeeded")),
            "{l}: {}",
            p.text
        );
        let d = &decisions(&app, &c.customer_id).await[0];
        assert_eq!(
            (d.event_kind.as_ref(), d.outcome.as_ref()),
            ("payment", "allow"),
            "{l}"
        );
        assert!(
            d.shadow.contains("big_payments"),
            "{l}: shadow {}",
            d.shadow
        );
        assert!(!d.fired.contains("big_payments"), "{l}: fired {}", d.fired);
        assert!(d.case_id.is_none(), "{l}: a shadow rule opened a case");

        // Switched live (an edit of the mode, at the version read), it blocks the next one.
        let live = json!({"description": "a test rule", "source": BIG_PAYMENTS, "priority": 900, "mode": "live", "expected_version": 1});
        let path = format!("{RULES}/big_payments");
        let r = app.send("PUT", &path, a, None, Some(live.clone())).await;
        assert_eq!(r.status, 200, "{l}: {}", r.text);
        assert_eq!(
            (&r.body["version"], &r.body["mode"]),
            (&json!(2), &json!("live")),
            "{l}"
        );
        // The same edit again, from the version it no longer is: refused.
        let r = app.send("PUT", &path, a, None, Some(live)).await;
        assert_error_param(
            l,
            &r,
            409,
            "invalid_request_error",
            "version_conflict",
            "expected_version",
        );
        let p = app.pay(&term, &app.offline_code(&c, 1), 900, "sh-2").await;
        assert_eq!(p.status, 201, "{l}: {}", p.text);
        assert_eq!(
            (p.body["status"].as_str(), p.body["decline_code"].as_str()),
            (Some("declined"), Some("do_not_honor")),
            "{l}: {}",
            p.text
        );
        assert!(
            !p.text.contains("big_payments"),
            "{l}: the till learns the rule"
        );
        let d = &decisions(&app, &c.customer_id).await[0];
        assert_eq!(
            (d.outcome.as_ref(), d.decided_by.as_deref()),
            ("block", Some("big_payments")),
            "{l}"
        );
        assert!(d.case_id.is_some(), "{l}: a block opens a case");
        // Below the threshold, payments go on.
        let p = app.pay(&term, &app.offline_code(&c, 2), 500, "sh-3").await;
        assert_eq!(p.body["status"], "succeeded", "{l}: {}", p.text);

        // The backtest of the rule over the window: it fired on the 800 (allowed then, blocked
        // now) and on the 900 (blocked then and now), not on the 500.
        let to_ms = app.clock_ms() + 1;
        let bt = |rule: Value| json!({"rule": rule, "from_ms": from_ms, "to_ms": to_ms});
        let r = app
            .send(
                "POST",
                BACKTEST,
                a,
                None,
                Some(bt(rule("big_payments", BIG_PAYMENTS, "shadow"))),
            )
            .await;
        assert_eq!(r.status, 200, "{l}: {}", r.text);
        let b = &r.body;
        assert_eq!(
            (&b["evaluated"], &b["fired"], &b["decided"], &b["replaced"]),
            (&json!(3), &json!(2), &json!(2), &json!(true)),
            "{l}: {b}"
        );
        assert_eq!(b["transitions"]["allow"]["block"], 1, "{l}: {b}");
        assert_eq!(b["transitions"]["block"]["block"], 1, "{l}: {b}");
        assert_eq!(b["transitions"]["allow"]["allow"], 1, "{l}: {b}");
        assert_eq!(
            (&b["changed"], &b["changed_vs_current"]),
            (&json!(1), &json!(0)),
            "{l}: {b}"
        );
        assert_eq!(b["by_kind"]["payment"]["fired"], 2, "{l}: {b}");
        assert_eq!(
            (&b["truncated"], &b["unreadable"]),
            (&json!(false), &json!(0)),
            "{l}: {b}"
        );
        assert_eq!(b["examples"][0]["recorded"], "allow", "{l}: {b}");
        assert_eq!(b["examples"][0]["outcome"], "block", "{l}: {b}");
        // A stricter candidate under a new name: added, and its own effect is the 500.
        let stricter = rule(
            "bigger_net",
            "block when event.kind == \"payment\" and payment.amount > 400",
            "live",
        );
        let r = app
            .send("POST", BACKTEST, a, None, Some(bt(stricter)))
            .await;
        assert_eq!(r.status, 200, "{l}: {}", r.text);
        let b = &r.body;
        assert_eq!(
            (&b["fired"], &b["replaced"]),
            (&json!(3), &json!(false)),
            "{l}: {b}"
        );
        assert_eq!(b["vs_current"]["allow"]["block"], 1, "{l}: {b}");
        assert_eq!(b["transitions"]["allow"]["block"], 2, "{l}: {b}");
        // A window before anything happened replays nothing.
        let r = app
            .send(
                "POST",
                BACKTEST,
                a,
                None,
                Some(json!({"rule": rule("x", BIG_PAYMENTS, "live"), "from_ms": 0, "to_ms": 1})),
            )
            .await;
        assert_eq!(
            (r.status, &r.body["evaluated"]),
            (200, &json!(0)),
            "{l}: {}",
            r.text
        );
        // An empty window, a rule that does not check: refused.
        let r = app
            .send(
                "POST",
                BACKTEST,
                a,
                None,
                Some(json!({"rule": rule("x", BIG_PAYMENTS, "live"), "from_ms": to_ms, "to_ms": from_ms})),
            )
            .await;
        assert_error_param(
            l,
            &r,
            400,
            "invalid_request_error",
            "invalid_window",
            "to_ms",
        );
        let r = app
            .send(
                "POST",
                BACKTEST,
                a,
                None,
                Some(bt(rule("x", "block when payment.amont > 1", "live"))),
            )
            .await;
        assert_error_param(
            l,
            &r,
            400,
            "invalid_request_error",
            "invalid_rule",
            "rule.source",
        );
        assert!(
            r.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("1:12")),
            "{l}: {}",
            r.text
        );

        // Both changes are in the audit log, and the chain holds.
        let rule_actions: Vec<String> = audit_actions(&app)
            .await
            .into_iter()
            .filter(|a| a.starts_with("risk.rule"))
            .collect();
        assert_eq!(
            rule_actions,
            vec!["risk.rule_created", "risk.rule_changed"],
            "{l}"
        );
        audit_ok(&app).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_checked_versioned_audited_and_guarded_by_role() {
    for app in apps().await {
        let l = app.label;
        let analyst = staff(&app, &format!("an-{l}@example.com"), "analyst").await;
        let support = staff(&app, &format!("sup-{l}@example.com"), "support").await;
        let security = staff(&app, &format!("sec-{l}@example.com"), "security").await;
        let finance = staff(&app, &format!("fin-{l}@example.com"), "finance").await;
        let a = Some(analyst.token.as_str());

        // A rule that does not check is refused with the line and column of the mistake.
        let bad = rule("typo", "block when\n  payment.amont > 10000", "shadow");
        let r = app.send("POST", RULES, a, None, Some(bad)).await;
        assert_error_param(
            l,
            &r,
            400,
            "invalid_request_error",
            "invalid_rule",
            "source",
        );
        let msg = r.body["error"]["message"].as_str().unwrap_or("");
        assert!(
            msg.contains("2:3") && msg.contains("payment.amount"),
            "{l}: {msg}"
        );
        let r = app
            .send(
                "POST",
                RULES,
                a,
                None,
                Some(rule("Bad Name!", BIG_PAYMENTS, "shadow")),
            )
            .await;
        assert_error_param(l, &r, 400, "invalid_request_error", "invalid_rule", "name");
        let mut extra = rule("x", BIG_PAYMENTS, "shadow");
        extra["enabled"] = json!(false);
        let r = app.send("POST", RULES, a, None, Some(extra)).await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_request");
        let r = app
            .send(
                "POST",
                RULES,
                a,
                None,
                Some(rule("x", BIG_PAYMENTS, "sometimes")),
            )
            .await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_request");

        // Created once; the name is taken after that (a default rule's name too).
        let r = app
            .send(
                "POST",
                RULES,
                a,
                None,
                Some(rule("night_owl", BIG_PAYMENTS, "shadow")),
            )
            .await;
        assert_eq!(r.status, 201, "{l}: {}", r.text);
        for name in ["night_owl", "impossible_travel"] {
            let r = app
                .send(
                    "POST",
                    RULES,
                    a,
                    None,
                    Some(rule(name, BIG_PAYMENTS, "shadow")),
                )
                .await;
            assert_error_param(l, &r, 409, "invalid_request_error", "rule_exists", "name");
        }

        // Disable and enable: each a new version; disabling twice changes nothing.
        let path = format!("{RULES}/night_owl");
        let r = app
            .send("POST", &format!("{path}/disable"), a, None, None)
            .await;
        assert_eq!(
            (r.status, &r.body["enabled"], &r.body["version"]),
            (200, &json!(false), &json!(2)),
            "{l}: {}",
            r.text
        );
        let r = app
            .send("POST", &format!("{path}/disable"), a, None, None)
            .await;
        assert_eq!(
            (r.status, &r.body["version"]),
            (200, &json!(2)),
            "{l}: {}",
            r.text
        );
        let r = app
            .send("POST", &format!("{path}/enable"), a, None, None)
            .await;
        assert_eq!(
            (r.status, &r.body["enabled"], &r.body["version"]),
            (200, &json!(true), &json!(3)),
            "{l}: {}",
            r.text
        );
        // An edit keeps the rule enabled and records the version it was made from.
        let edit = json!({"description": "later", "source": BIG_PAYMENTS, "priority": 10, "mode": "shadow", "expected_version": 3});
        let r = app.send("PUT", &path, a, None, Some(edit)).await;
        assert_eq!(
            (r.status, &r.body["version"], &r.body["enabled"]),
            (200, &json!(4), &json!(true)),
            "{l}: {}",
            r.text
        );
        let bad_edit = json!({"description": "", "source": "block when 0 < account.age < 30d", "priority": 10, "mode": "shadow", "expected_version": 4});
        let r = app.send("PUT", &path, a, None, Some(bad_edit)).await;
        assert_error_param(
            l,
            &r,
            400,
            "invalid_request_error",
            "invalid_rule",
            "source",
        );

        // Read back: the current version and every version, newest first.
        let r = app
            .send("GET", &path, Some(&support.token), None, None)
            .await;
        assert_eq!(r.status, 200, "{l}: {}", r.text);
        let versions: Vec<i64> = r.body["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .map(|v| v["version"].as_i64().unwrap_or(0))
            .collect();
        assert_eq!(versions, vec![4, 3, 2, 1], "{l}: {}", r.text);
        assert_eq!(
            (&r.body["priority"], &r.body["description"]),
            (&json!(10), &json!("later")),
            "{l}"
        );
        assert_eq!(r.body["versions"][2]["enabled"], false, "{l}");
        let r = app
            .send("GET", RULES, Some(&security.token), None, None)
            .await;
        assert_eq!(r.status, 200, "{l}: {}", r.text);
        let names: Vec<&str> = r.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|x| x["name"].as_str())
            .collect();
        assert!(
            names.contains(&"night_owl") && names.contains(&"basket.tobacco.block"),
            "{l}: {names:?}"
        );
        let r = app
            .send("GET", &format!("{RULES}/no_such_rule"), a, None, None)
            .await;
        assert_error(l, &r, 404, "invalid_request_error", "resource_missing");
        let edit = json!({"description": "", "source": BIG_PAYMENTS, "priority": 1, "mode": "live", "expected_version": 1});
        let r = app
            .send("PUT", &format!("{RULES}/no_such_rule"), a, None, Some(edit))
            .await;
        assert_error(l, &r, 404, "invalid_request_error", "resource_missing");
        let r = app
            .send(
                "POST",
                &format!("{RULES}/no_such_rule/enable"),
                a,
                None,
                None,
            )
            .await;
        assert_error(l, &r, 404, "invalid_request_error", "resource_missing");

        // Roles: support and security read, only analysts and admins write and backtest,
        // finance sees nothing; a wrong role is refused before the body is looked at.
        let window = json!({"rule": rule("x", BIG_PAYMENTS, "live"), "from_ms": 0, "to_ms": 1});
        for (who, method, route, body) in [
            (
                &support,
                "POST",
                RULES.to_string(),
                Some(rule("y", BIG_PAYMENTS, "live")),
            ),
            (
                &security,
                "POST",
                RULES.to_string(),
                Some(json!({"not": "even a rule"})),
            ),
            (&support, "PUT", path.clone(), Some(json!({}))),
            (&security, "POST", format!("{path}/disable"), None),
            (&support, "POST", BACKTEST.to_string(), Some(window.clone())),
            (
                &security,
                "POST",
                BACKTEST.to_string(),
                Some(window.clone()),
            ),
            (&finance, "GET", RULES.to_string(), None),
            (&finance, "GET", path.clone(), None),
            (&finance, "GET", CASES.to_string(), None),
        ] {
            let r = app.send(method, &route, Some(&who.token), None, body).await;
            assert_error(l, &r, 403, "authentication_error", "forbidden_role");
        }
        let r = app.send("GET", RULES, None, None, None).await;
        assert_error(l, &r, 401, "authentication_error", "unauthenticated");
        let customer = app.customer(&format!("cust-{l}@example.com")).await;
        let r = app
            .send("GET", RULES, Some(&customer.token), None, None)
            .await;
        assert_error(l, &r, 401, "authentication_error", "unauthenticated");
        // Nothing a refused request sent was saved.
        let r = app.send("GET", &path, a, None, None).await;
        assert_eq!(r.body["version"], 4, "{l}: {}", r.text);

        // Every change is in the audit log, by the analyst, in order.
        let actions: Vec<String> = audit_actions(&app)
            .await
            .into_iter()
            .filter(|a| a.starts_with("risk.rule"))
            .collect();
        assert_eq!(
            actions,
            vec![
                "risk.rule_created",
                "risk.rule_disabled",
                "risk.rule_enabled",
                "risk.rule_changed"
            ],
            "{l}"
        );
        let actors = app
            .count("SELECT COUNT(DISTINCT actor) FROM audit_log WHERE action LIKE 'risk.rule%'")
            .await;
        assert_eq!(actors, 1, "{l}");
        let entries = app
            .db
            .read(|c| konbini_store::audit::for_subject(c, "night_owl", 10))
            .await
            .expect("audit");
        let edit: Value = serde_json::from_str(&entries[3].details).expect("details");
        assert_eq!(edit["version"], 4, "{l}: {edit}");
        assert_eq!(
            edit["changed"],
            json!(["description", "priority"]),
            "{l}: {edit}"
        );
        assert_eq!(entries[3].actor, analyst.id, "{l}");
        assert!(
            edit["source_sha256"]
                .as_str()
                .is_some_and(|h| h.len() == 64),
            "{l}: {edit}"
        );
        audit_ok(&app).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_are_explained_assigned_and_fraud_freezes_the_customer() {
    for app in apps().await {
        let l = app.label;
        let analyst = staff(&app, &format!("an-{l}@example.com"), "analyst").await;
        let security = staff(&app, &format!("sec-{l}@example.com"), "security").await;
        let support = staff(&app, &format!("sup-{l}@example.com"), "support").await;
        let (c, _) = app
            .funded_customer(&format!("victim-{l}@example.com"), 5_000)
            .await;
        let (_, term) = app.store_with_terminal("st_cases").await;
        let r = app
            .send(
                "POST",
                RULES,
                Some(&analyst.token),
                None,
                Some(rule("big_payments", BIG_PAYMENTS, "live")),
            )
            .await;
        assert_eq!(r.status, 201, "{l}: {}", r.text);
        let p = app
            .pay(&term, &app.offline_code(&c, 0), 800, "case-1")
            .await;
        assert_eq!(p.body["decline_code"], "do_not_honor", "{l}: {}", p.text);

        // Support sees the open case and reads it, explained.
        let r = app
            .send("GET", CASES, Some(&support.token), None, None)
            .await;
        assert_eq!(r.status, 200, "{l}: {}", r.text);
        let case = r.body["data"]
            .as_array()
            .expect("data")
            .iter()
            .find(|k| k["customer_id"] == json!(c.customer_id))
            .unwrap_or_else(|| panic!("{l}: no case for the customer in {}", r.text))
            .clone();
        assert_eq!(
            (&case["status"], &case["assigned_to"]),
            (&json!("open"), &Value::Null),
            "{l}"
        );
        let path = format!("{CASES}/{}", case["id"].as_str().expect("case id"));
        let r = app
            .send("GET", &path, Some(&support.token), None, None)
            .await;
        assert_eq!(r.status, 200, "{l}: {}", r.text);
        assert_eq!(r.body["customer"]["status"], "active", "{l}: {}", r.text);
        let d = &r.body["recent_decisions"][0];
        assert_eq!(
            (&d["event_kind"], &d["outcome"], &d["decided_by"]),
            (&json!("payment"), &json!("block"), &json!("big_payments")),
            "{l}: {d}"
        );
        assert!(
            d["fired"]
                .as_array()
                .is_some_and(|f| f.contains(&json!("big_payments"))),
            "{l}: {d}"
        );
        assert_eq!(d["features"]["payment.amount"], 800, "{l}: {d}");
        assert_eq!(d["case_id"], case["id"], "{l}: {d}");
        let r = app
            .send(
                "GET",
                &format!("{CASES}/case_nope"),
                Some(&support.token),
                None,
                None,
            )
            .await;
        assert_error(l, &r, 404, "invalid_request_error", "resource_missing");
        let r = app
            .send(
                "GET",
                &format!("{CASES}?status=maybe"),
                Some(&support.token),
                None,
                None,
            )
            .await;
        assert_error_param(
            l,
            &r,
            400,
            "invalid_request_error",
            "invalid_query",
            "status",
        );
        let r = app
            .send(
                "GET",
                &format!("{CASES}?colour=red"),
                Some(&support.token),
                None,
                None,
            )
            .await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_query");

        // Assigned to oneself by default, or to a colleague who may work cases.
        let assign = format!("{path}/assign");
        let r = app
            .send("POST", &assign, Some(&support.token), None, Some(json!({})))
            .await;
        assert_error(l, &r, 403, "authentication_error", "forbidden_role");
        let r = app
            .send(
                "POST",
                &assign,
                Some(&security.token),
                None,
                Some(json!({})),
            )
            .await;
        assert_eq!(
            (r.status, &r.body["assigned_to"]),
            (200, &json!(security.id)),
            "{l}: {}",
            r.text
        );
        for nobody in [support.id.as_str(), "stf_nope"] {
            let r = app
                .send(
                    "POST",
                    &assign,
                    Some(&security.token),
                    None,
                    Some(json!({"staff_id": nobody})),
                )
                .await;
            assert_error_param(
                l,
                &r,
                400,
                "invalid_request_error",
                "invalid_assignee",
                "staff_id",
            );
        }
        let r = app
            .send(
                "POST",
                &assign,
                Some(&security.token),
                None,
                Some(json!({"staff_id": analyst.id})),
            )
            .await;
        assert_eq!(
            (r.status, &r.body["assigned_to"]),
            (200, &json!(analyst.id)),
            "{l}: {}",
            r.text
        );

        // Resolved as fraud: the customer is frozen, signed out everywhere and told.
        let resolve = format!("{path}/resolve");
        let fraud =
            json!({"resolution": "fraud", "note": "the customer did not make this payment"});
        let r = app
            .send(
                "POST",
                &resolve,
                Some(&support.token),
                None,
                Some(fraud.clone()),
            )
            .await;
        assert_error(l, &r, 403, "authentication_error", "forbidden_role");
        let r = app
            .send(
                "POST",
                &resolve,
                Some(&analyst.token),
                None,
                Some(json!({"resolution": "fraud", "note": "  "})),
            )
            .await;
        assert_error_param(l, &r, 400, "invalid_request_error", "invalid_note", "note");
        let r = app
            .send(
                "POST",
                &resolve,
                Some(&analyst.token),
                None,
                Some(json!({"resolution": "unsure", "note": "x"})),
            )
            .await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_request");
        let r = app
            .send(
                "POST",
                &resolve,
                Some(&analyst.token),
                None,
                Some(fraud.clone()),
            )
            .await;
        assert_eq!(r.status, 200, "{l}: {}", r.text);
        assert_eq!(
            (
                &r.body["status"],
                &r.body["resolution"],
                &r.body["customer_status"]
            ),
            (&json!("resolved"), &json!("fraud"), &json!("frozen")),
            "{l}: {}",
            r.text
        );
        let w = app
            .send("GET", "/v1/wallet", Some(&c.token), None, None)
            .await;
        assert_error(l, &w, 401, "authentication_error", "unauthenticated");
        let login = app
            .send("POST", "/v1/sessions", None, None, Some(json!({"email": c.email, "password": c.password, "device": {"id": c.device_id, "secret": c.device_secret}})))
            .await;
        assert_error(l, &login, 403, "authentication_error", "account_frozen");
        let p = app
            .pay(&term, &app.offline_code(&c, 1), 100, "case-2")
            .await;
        assert_eq!(p.body["status"], "declined", "{l}: {}", p.text);
        app.email(&c.email, "Your account is frozen", 0).await;

        // A resolved case is done with.
        let r = app
            .send("POST", &resolve, Some(&analyst.token), None, Some(fraud))
            .await;
        assert_error(l, &r, 409, "invalid_request_error", "case_resolved");
        let r = app
            .send("POST", &assign, Some(&analyst.token), None, Some(json!({})))
            .await;
        assert_error(l, &r, 409, "invalid_request_error", "case_resolved");
        let r = app
            .send(
                "GET",
                &format!("{CASES}?status=resolved&limit=10"),
                Some(&support.token),
                None,
                None,
            )
            .await;
        assert!(
            r.body["data"]
                .as_array()
                .is_some_and(|d| d.iter().any(|k| k["id"] == case["id"])),
            "{l}: {}",
            r.text
        );
        let r = app
            .send("GET", CASES, Some(&support.token), None, None)
            .await;
        assert!(
            r.body["data"]
                .as_array()
                .is_some_and(|d| d.iter().all(|k| k["id"] != case["id"])),
            "{l}: {}",
            r.text
        );

        let actions = audit_actions(&app).await;
        for a in [
            "risk.case_assigned",
            "risk.case_resolved",
            "customer.frozen",
        ] {
            assert!(
                actions.iter().any(|x| x == a),
                "{l}: {a} missing from {actions:?}"
            );
        }
        audit_ok(&app).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_freezes_and_unfreezes_a_customer() {
    for app in apps().await {
        let l = app.label;
        let security = staff(&app, &format!("sec-{l}@example.com"), "security").await;
        let analyst = staff(&app, &format!("an-{l}@example.com"), "analyst").await;
        let c = app.customer(&format!("frozen-{l}@example.com")).await;
        let s = Some(security.token.as_str());
        let freeze = format!("/v1/admin/customers/{}/freeze", c.customer_id);
        let unfreeze = format!("/v1/admin/customers/{}/unfreeze", c.customer_id);
        let reason = json!({"reason": "reported stolen phone"});

        let r = app
            .send(
                "POST",
                &freeze,
                Some(&analyst.token),
                None,
                Some(reason.clone()),
            )
            .await;
        assert_error(l, &r, 403, "authentication_error", "forbidden_role");
        let r = app
            .send("POST", &freeze, s, None, Some(json!({"reason": ""})))
            .await;
        assert_error_param(
            l,
            &r,
            400,
            "invalid_request_error",
            "invalid_note",
            "reason",
        );
        let r = app
            .send(
                "POST",
                "/v1/admin/customers/cus_nope/freeze",
                s,
                None,
                Some(reason.clone()),
            )
            .await;
        assert_error(l, &r, 404, "invalid_request_error", "resource_missing");
        assert_eq!(
            app.send("GET", "/v1/wallet", Some(&c.token), None, None)
                .await
                .status,
            200,
            "{l}"
        );

        let r = app
            .send("POST", &freeze, s, None, Some(reason.clone()))
            .await;
        assert_eq!(
            (r.status, &r.body["status"]),
            (200, &json!("frozen")),
            "{l}: {}",
            r.text
        );
        let w = app
            .send("GET", "/v1/wallet", Some(&c.token), None, None)
            .await;
        assert_error(l, &w, 401, "authentication_error", "unauthenticated");
        let r = app
            .send("POST", &freeze, s, None, Some(reason.clone()))
            .await;
        assert_error(l, &r, 409, "invalid_request_error", "already_frozen");
        let login = app
            .send(
                "POST",
                "/v1/sessions",
                None,
                None,
                Some(json!({"email": c.email, "password": c.password})),
            )
            .await;
        assert_error(l, &login, 403, "authentication_error", "account_frozen");
        app.email(&c.email, "Your account is frozen", 0).await;
        app.text(&c.phone, "frozen", 0).await;

        let r = app
            .send(
                "POST",
                &unfreeze,
                s,
                None,
                Some(json!({"reason": "the customer called back"})),
            )
            .await;
        assert_eq!(
            (r.status, &r.body["status"]),
            (200, &json!("active")),
            "{l}: {}",
            r.text
        );
        let r = app.send("POST", &unfreeze, s, None, Some(reason)).await;
        assert_error(l, &r, 409, "invalid_request_error", "not_frozen");
        app.email(&c.email, "Your account is open again", 0).await;
        // The freeze ended the device binding: signing in again needs the second factor.
        let again = app.login_new_device(&c).await;
        assert_eq!(
            app.send("GET", "/v1/wallet", Some(&again.token), None, None)
                .await
                .status,
            200,
            "{l}"
        );

        // Audited with the reason; the message to the customer carries ids only.
        let id = c.customer_id.clone();
        let entries = app
            .db
            .read(move |conn| konbini_store::audit::for_subject(conn, &id, 100))
            .await
            .expect("audit");
        let frozen = entries
            .iter()
            .find(|e| e.action == "customer.frozen")
            .expect("customer.frozen audited");
        assert_eq!(frozen.actor, security.id, "{l}");
        assert!(
            frozen.details.contains("reported stolen phone"),
            "{l}: {}",
            frozen.details
        );
        assert!(
            entries.iter().any(|e| e.action == "customer.unfrozen"),
            "{l}"
        );
        let leaked = app
            .count("SELECT COUNT(*) FROM outbox WHERE topic LIKE 'customer.%frozen' AND payload LIKE '%stolen%'")
            .await;
        assert_eq!(leaked, 0, "{l}: the reason reached the outbox");
        audit_ok(&app).await;
    }
}
