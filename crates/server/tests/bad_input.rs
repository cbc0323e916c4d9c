//! Malformed and hostile input over HTTP on both backends: every refusal is a clear 4xx with
//! the error object, and none of it hurts the server.

mod common;
use common::*;
use serde_json::{Value, json};

/// A valid payment body for `code` and 100 yen, with `f` applied.
fn payment_with(code: &str, f: impl FnOnce(&mut Value)) -> Value {
    let mut b = payment_body(code, 100, "order-1");
    f(&mut b);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_clear_400s_and_the_server_keeps_serving() {
    for app in apps().await {
        let l = app.label;
        let (c, card) = app.funded_customer("aoi@example.com", 10_000).await;
        let (_, term) = app.store_with_terminal("st_1").await;
        app.clock.advance_ms(1_000);
        let code = app.offline_code(&c, 0);
        let pay = |body: Value| {
            app.send(
                "POST",
                "/v1/pos/payments",
                Some(&term),
                Some("k"),
                Some(body),
            )
        };
        let topup =
            |body: Value| app.send("POST", "/v1/topups", Some(&c.token), Some("t"), Some(body));

        // Unknown fields are refused by name.
        let r = pay(payment_with(&code, |b| b["tip"] = json!(1))).await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_request");
        assert!(
            r.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("tip")),
            "{l}: {}",
            r.text
        );
        let r = pay(payment_with(&code, |b| {
            b["basket"][0]["discount"] = json!(1)
        }))
        .await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_request");
        assert!(r.text.contains("discount"), "{l}: {}", r.text);
        let r =
            topup(json!({"amount": 100, "currency": "JPY", "card_id": card, "destination": "x"}))
                .await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_request");
        assert!(r.text.contains("destination"), "{l}: {}", r.text);
        let r = app.send("POST", "/v1/signup", None, None, Some(json!({"email": "x@example.com", "phone": "+819012345678", "password": "long enough password", "birth_date": "2019-01-01"}))).await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_request");
        assert!(r.text.contains("birth_date"), "{l}: {}", r.text);

        // Wrong types and missing fields name the field.
        for (what, body) in [
            (
                "amount as string",
                payment_with(&code, |b| b["amount"] = json!("100")),
            ),
            (
                "amount as float",
                payment_with(&code, |b| b["amount"] = json!(1.5)),
            ),
            (
                "amount null",
                payment_with(&code, |b| b["amount"] = Value::Null),
            ),
            (
                "amount missing",
                payment_with(&code, |b| {
                    if let Some(o) = b.as_object_mut() {
                        o.remove("amount");
                    }
                }),
            ),
            (
                "code as number",
                payment_with(&code, |b| b["code"] = json!(88)),
            ),
        ] {
            let r = pay(body).await;
            assert_error(
                &format!("{l} {what}"),
                &r,
                400,
                "invalid_request_error",
                "invalid_request",
            );
            let m = r.body["error"]["message"].as_str().unwrap_or("");
            assert!(
                m.contains("amount") || m.contains("code"),
                "{l} {what}: {}",
                r.text
            );
        }
        for raw in [
            r#"{"amount": 9223372036854775808, "currency": "JPY", "card_id": "c"}"#,
            r#"{"amount": 1e30, "currency": "JPY", "card_id": "c"}"#,
            r#"{"amount": 1e3, "currency": "JPY", "card_id": "c"}"#,
            r#"{"amount": -9223372036854775809, "currency": "JPY", "card_id": "c"}"#,
        ] {
            let r = app
                .raw(
                    "POST",
                    "/v1/topups",
                    Some(&c.token),
                    Some("t"),
                    "application/json",
                    raw.as_bytes().to_vec(),
                )
                .await;
            assert_error(
                &format!("{l} {raw}"),
                &r,
                400,
                "invalid_request_error",
                "invalid_request",
            );
            assert!(r.text.contains("amount"), "{l}: {}", r.text);
            assert!(
                !r.text.contains("9223372036854775808"),
                "{l}: long digit runs are not echoed: {}",
                r.text
            );
        }
        // Well-typed but invalid amounts.
        for amount in [0, -1, -1_000, 1_000_000_000_000_000, i64::MAX, i64::MIN] {
            let r = pay(payment_with(&code, |b| {
                b["amount"] = json!(amount);
                b["basket"][0]["unit_price"] = json!(amount);
            }))
            .await;
            assert_error_param(
                &format!("{l} pay {amount}"),
                &r,
                400,
                "invalid_request_error",
                "invalid_amount",
                "amount",
            );
            let r = topup(json!({"amount": amount, "currency": "JPY", "card_id": card})).await;
            assert_error_param(
                &format!("{l} topup {amount}"),
                &r,
                400,
                "invalid_request_error",
                "invalid_amount",
                "amount",
            );
        }
        // Currencies.
        for (cur, code_) in [
            ("XXX", "invalid_currency"),
            ("jpy", "invalid_currency"),
            ("JP\u{200b}Y", "invalid_currency"),
            ("", "invalid_currency"),
            ("USD", "currency_not_supported"),
            ("EUR", "currency_not_supported"),
        ] {
            let r = pay(payment_with(&code, |b| b["currency"] = json!(cur))).await;
            assert_error_param(
                &format!("{l} {cur:?}"),
                &r,
                400,
                "invalid_request_error",
                code_,
                "currency",
            );
            let r = topup(json!({"amount": 100, "currency": cur, "card_id": card})).await;
            assert_error_param(
                &format!("{l} topup {cur:?}"),
                &r,
                400,
                "invalid_request_error",
                code_,
                "currency",
            );
        }

        // Baskets.
        let line = |price: i64, qty: i64| json!({"sku": "4901234567894", "category": "food", "quantity": qty, "unit_price": price});
        let r = pay(payment_with(&code, |b| b["amount"] = json!(101))).await;
        assert_error_param(
            l,
            &r,
            400,
            "invalid_request_error",
            "basket_amount_mismatch",
            "amount",
        );
        let r = pay(payment_with(&code, |b| {
            b["basket"] = json!(vec![line(1, 1); 201])
        }))
        .await;
        assert_error_param(
            l,
            &r,
            400,
            "invalid_request_error",
            "invalid_basket",
            "basket",
        );
        let r = pay(payment_with(&code, |b| b["basket"] = json!([]))).await;
        assert_error_param(
            l,
            &r,
            400,
            "invalid_request_error",
            "invalid_basket",
            "basket",
        );
        for (what, ln, param) in [
            ("quantity 0", line(100, 0), "basket[0].quantity"),
            ("quantity -1", line(-100, -1), "basket[0].quantity"),
            ("quantity 10001", line(1, 10_001), "basket[0].quantity"),
            ("negative price", line(-100, 1), "basket[0].unit_price"),
            (
                "overflowing line",
                line(i64::MAX / 2, 3),
                "basket[0].unit_price",
            ),
        ] {
            let r = pay(payment_with(&code, |b| b["basket"] = json!([ln]))).await;
            assert_error_param(
                &format!("{l} {what}"),
                &r,
                400,
                "invalid_request_error",
                "invalid_basket",
                param,
            );
        }
        // 200 lines adding up is fine (checked by a later successful payment below), 2 lines
        // whose total is right but one negative is not.
        let r = pay(payment_with(&code, |b| {
            b["basket"] = json!([line(200, 1), line(-100, 1)])
        }))
        .await;
        assert_error_param(
            l,
            &r,
            400,
            "invalid_request_error",
            "invalid_basket",
            "basket[1].unit_price",
        );

        // Unicode tricks.
        let fw: String = code
            .chars()
            .map(|ch| char::from_u32(0xFF10 + ch.to_digit(10).unwrap_or(0)).unwrap_or(ch))
            .collect();
        for (what, body, err, param) in [
            (
                "full-width code",
                payment_with(&code, |b| b["code"] = json!(fw)),
                "invalid_code",
                "code",
            ),
            (
                "zero-width in code",
                payment_with(&code, |b| {
                    b["code"] = json!(format!("{}\u{200b}{}", &code[..4], &code[4..]))
                }),
                "invalid_code",
                "code",
            ),
            (
                "RTL override in code",
                payment_with(&code, |b| b["code"] = json!(format!("\u{202e}{code}"))),
                "invalid_code",
                "code",
            ),
            (
                "Arabic-Indic digits",
                payment_with(&code, |b| b["code"] = json!("٨٨١٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠٠")),
                "invalid_code",
                "code",
            ),
            (
                "full-width sku",
                payment_with(&code, |b| {
                    b["basket"][0]["sku"] = json!("４９０１２３４５６７８９４")
                }),
                "invalid_basket",
                "basket[0].sku",
            ),
            (
                "RTL override in sku",
                payment_with(&code, |b| b["basket"][0]["sku"] = json!("4901\u{202e}234")),
                "invalid_basket",
                "basket[0].sku",
            ),
            (
                "zero-width in sku",
                payment_with(&code, |b| b["basket"][0]["sku"] = json!("4901\u{200d}234")),
                "invalid_basket",
                "basket[0].sku",
            ),
            (
                "empty sku",
                payment_with(&code, |b| b["basket"][0]["sku"] = json!("")),
                "invalid_basket",
                "basket[0].sku",
            ),
            (
                "65-char sku",
                payment_with(&code, |b| b["basket"][0]["sku"] = json!("9".repeat(65))),
                "invalid_basket",
                "basket[0].sku",
            ),
            (
                "category look-alike",
                payment_with(&code, |b| b["basket"][0]["category"] = json!("tobаcco")),
                "invalid_basket",
                "basket[0].category",
            ),
            (
                "category case",
                payment_with(&code, |b| b["basket"][0]["category"] = json!("Food")),
                "invalid_basket",
                "basket[0].category",
            ),
            (
                "RTL override in order_ref",
                payment_with(&code, |b| b["order_ref"] = json!("order\u{202e}1")),
                "invalid_order_ref",
                "order_ref",
            ),
            (
                "newline in order_ref",
                payment_with(&code, |b| b["order_ref"] = json!("order\n1")),
                "invalid_order_ref",
                "order_ref",
            ),
            (
                "empty order_ref",
                payment_with(&code, |b| b["order_ref"] = json!("")),
                "invalid_order_ref",
                "order_ref",
            ),
        ] {
            let r = pay(body).await;
            assert_error_param(
                &format!("{l} {what}"),
                &r,
                400,
                "invalid_request_error",
                err,
                param,
            );
        }
        for (what, body, err) in [
            (
                "RTL override in email",
                json!({"email": "a\u{202e}b@example.com", "phone": "+819012345678", "password": "long enough password"}),
                "invalid_email",
            ),
            (
                "full-width @",
                json!({"email": "a＠example.com", "phone": "+819012345678", "password": "long enough password"}),
                "invalid_email",
            ),
            (
                "full-width phone",
                json!({"email": "p@example.com", "phone": "+８１９０１２３４５６７８", "password": "long enough password"}),
                "invalid_phone",
            ),
            (
                "short password",
                json!({"email": "p@example.com", "phone": "+819012345678", "password": "short"}),
                "invalid_password",
            ),
            (
                "a leaked password",
                json!({"email": "p@example.com", "phone": "+819012345678", "password": "Password123456!"}),
                "password_too_common",
            ),
            (
                "a keyboard run",
                json!({"email": "p@example.com", "phone": "+819012345678", "password": "qwertyuiopasdf"}),
                "password_too_common",
            ),
            (
                "the email in the password",
                json!({"email": "hanako.sato@example.com", "phone": "+819012345678", "password": "hanako.sato 2026!"}),
                "password_contextual",
            ),
        ] {
            let r = app.send("POST", "/v1/signup", None, None, Some(body)).await;
            assert_error(
                &format!("{l} {what}"),
                &r,
                400,
                "invalid_request_error",
                err,
            );
        }
        let r = app.send("POST", "/v1/cards", Some(&c.token), None, Some(json!({"number": "４２４２４２４２４２４２４２４２", "exp_month": 12, "exp_year": 2030, "cvc": "123"}))).await;
        assert_error(l, &r, 402, "payment_error", "invalid_card");
        // Idempotency keys with non-ASCII bytes.
        let r = app
            .raw(
                "POST",
                "/v1/topups",
                Some(&c.token),
                None,
                "application/json",
                json!({"amount": 100, "currency": "JPY", "card_id": card})
                    .to_string()
                    .into_bytes(),
            )
            .await;
        assert_error(
            l,
            &r,
            400,
            "invalid_request_error",
            "idempotency_key_missing",
        );

        // Not JSON, wrong content type, empty, wrong shape.
        let r = app
            .raw(
                "POST",
                "/v1/pos/payments",
                Some(&term),
                Some("k"),
                "application/json",
                b"{\"code\": ".to_vec(),
            )
            .await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_json");
        let r = app
            .raw(
                "POST",
                "/v1/pos/payments",
                Some(&term),
                Some("k"),
                "application/json",
                b"".to_vec(),
            )
            .await;
        assert_error_shape(l, &r);
        assert_eq!(r.status, 400, "{l}: {}", r.text);
        let r = app
            .raw(
                "POST",
                "/v1/pos/payments",
                Some(&term),
                Some("k"),
                "text/plain",
                payment_with(&code, |_| {}).to_string().into_bytes(),
            )
            .await;
        assert_error(
            l,
            &r,
            400,
            "invalid_request_error",
            "unsupported_content_type",
        );
        let r = app
            .raw(
                "POST",
                "/v1/pos/payments",
                Some(&term),
                Some("k"),
                "application/x-www-form-urlencoded",
                b"code=1&amount=100".to_vec(),
            )
            .await;
        assert_error(
            l,
            &r,
            400,
            "invalid_request_error",
            "unsupported_content_type",
        );
        for body in ["[]", "null", "\"x\"", "42"] {
            let r = app
                .raw(
                    "POST",
                    "/v1/pos/payments",
                    Some(&term),
                    Some("k"),
                    "application/json",
                    body.as_bytes().to_vec(),
                )
                .await;
            assert_error(
                &format!("{l} {body}"),
                &r,
                400,
                "invalid_request_error",
                "invalid_request",
            );
        }
        let r = app
            .raw(
                "POST",
                "/v1/pos/payments",
                Some(&term),
                Some("k"),
                "application/json",
                vec![0xff, 0xfe, b'{', b'}'],
            )
            .await;
        assert_error(l, &r, 400, "invalid_request_error", "invalid_json");
        // A deeply nested body does not overflow the stack.
        let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
        let r = app
            .raw(
                "POST",
                "/v1/pos/payments",
                Some(&term),
                Some("k"),
                "application/json",
                deep.into_bytes(),
            )
            .await;
        assert_error_shape(l, &r);
        assert_eq!(r.status, 400, "{l}: {}", r.text);

        // Over 16 KiB: 413 with the error object, on JSON routes and on the refund route.
        let big = payment_with(&code, |b| b["order_ref"] = json!("x".repeat(17 * 1024)));
        let r = pay(big).await;
        assert_error(l, &r, 413, "invalid_request_error", "body_too_large");
        let r = app
            .raw(
                "POST",
                "/v1/pos/payments/pay_x/refunds",
                Some(&term),
                Some("r"),
                "application/json",
                format!("{{\"amount\": 1, \"pad\": \"{}\"}}", "x".repeat(17 * 1024)).into_bytes(),
            )
            .await;
        assert_error(l, &r, 413, "invalid_request_error", "body_too_large");
        let r = app
            .raw(
                "POST",
                "/v1/signup",
                None,
                None,
                "application/json",
                vec![b' '; 64 * 1024],
            )
            .await;
        assert_error(l, &r, 413, "invalid_request_error", "body_too_large");

        // None of that was recorded or charged; the server still answers and still pays.
        assert_eq!(app.count("SELECT COUNT(*) FROM payments").await, 0, "{l}");
        let h = app
            .http
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .expect("healthz");
        assert_eq!(h.status().as_u16(), 200, "{l}");
        assert_eq!(h.text().await.expect("body"), "ok", "{l}");
        let ok = pay(payment_with(&code, |b| {
            b["basket"] = json!(vec![line(1, 2); 50])
        }))
        .await;
        assert_eq!(
            (ok.status, ok.body["status"].as_str()),
            (201, Some("succeeded")),
            "{l}: {}",
            ok.text
        );
        let max = app.send("POST", "/v1/pos/payments", Some(&term), Some("k2"), Some(json!({
            "code": app.offline_code(&c, 1), "amount": 200, "currency": "JPY", "order_ref": "o",
            "basket": vec![line(1, 1); 200],
        }))).await;
        assert_eq!(
            max.body["status"], "succeeded",
            "{l}: 200 lines is the maximum, and allowed: {}",
            max.text
        );
        assert_eq!(app.balance(&c).await, 9_700, "{l}");
        app.ledger_ok().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_paging_and_bad_queries() {
    for app in apps().await {
        let l = app.label;
        let (c, card) = app.funded_customer("ayumi@example.com", 1_000).await;
        for i in 0..4 {
            app.clock.advance_ms(1_000);
            assert_eq!(
                app.top_up(&c, &card, 100 + i, &format!("p{i}"))
                    .await
                    .status,
                201,
                "{l}"
            );
        }
        // Five rows; walk them two at a time with the cursor.
        let mut seen = Vec::new();
        let mut path = "/v1/transactions?limit=2".to_string();
        for page in 0..3 {
            let r = app.send("GET", &path, Some(&c.token), None, None).await;
            assert_eq!(r.status, 200, "{l}: {}", r.text);
            let data = r.body["data"].as_array().expect("data");
            seen.extend(data.iter().map(|x| x["amount"].as_i64().unwrap_or(0)));
            assert_eq!(r.body["has_more"], page < 2, "{l}: page {page}");
            if let Some(next) = r.body["next_cursor"].as_str() {
                path = format!("/v1/transactions?limit=2&cursor={next}");
            }
        }
        assert_eq!(seen, [103, 102, 101, 100, 1_000], "{l}");

        for (q, code, param) in [
            ("limit=0", "invalid_limit", Some("limit")),
            ("limit=101", "invalid_limit", Some("limit")),
            ("limit=1000", "invalid_limit", Some("limit")),
            ("limit=-1", "invalid_limit", Some("limit")),
            ("limit=abc", "invalid_query", None),
            ("limit=1.5", "invalid_query", None),
            ("limit=99999999999999999999", "invalid_query", None),
            ("cursor=garbage", "invalid_cursor", Some("cursor")),
            (
                "cursor=1.x%27%20OR%201%3D1--",
                "invalid_cursor",
                Some("cursor"),
            ),
            ("cursor=abc.def", "invalid_cursor", Some("cursor")),
            ("cursor=", "invalid_cursor", Some("cursor")),
            ("evil=1", "invalid_query", None),
        ] {
            let r = app
                .send(
                    "GET",
                    &format!("/v1/transactions?{q}"),
                    Some(&c.token),
                    None,
                    None,
                )
                .await;
            match param {
                Some(p) => assert_error_param(
                    &format!("{l} {q}"),
                    &r,
                    400,
                    "invalid_request_error",
                    code,
                    p,
                ),
                None => assert_error(&format!("{l} {q}"), &r, 400, "invalid_request_error", code),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_with_the_error_object() {
    for app in apps().await {
        let l = app.label;
        let c = app.customer("bin@example.com").await;
        let (_, term) = app.store_with_terminal("st_1").await;
        for path in [
            "/v1/nope",
            "/v2/wallet",
            "/",
            "/v1/pos/payments/x/y/z",
            "/v1/wallet/",
            "/%00",
            "/v1/%ff",
        ] {
            let r = app.send("GET", path, Some(&c.token), None, None).await;
            assert_error(
                &format!("{l} {path}"),
                &r,
                404,
                "invalid_request_error",
                "resource_missing",
            );
        }
        // A known path with a method it does not serve.
        for (m, path) in [
            ("PUT", "/v1/wallet"),
            ("DELETE", "/v1/pos/payments"),
            ("GET", "/v1/topups"),
            ("PATCH", "/v1/cards"),
        ] {
            let r = app.send(m, path, Some(&c.token), None, None).await;
            assert_error(
                &format!("{l} {m} {path}"),
                &r,
                405,
                "invalid_request_error",
                "method_not_allowed",
            );
        }
        // Path parameters that are not valid UTF-8 once decoded.
        let r = app.get_payment(&term, "%ff%fe").await;
        assert_error_shape(l, &r);
        assert!([400, 404].contains(&r.status), "{l}: {}", r.text);
        let r = app
            .send("DELETE", "/v1/cards/%c0%af", Some(&c.token), None, None)
            .await;
        assert_error_shape(l, &r);
        assert!([400, 404].contains(&r.status), "{l}: {}", r.text);
        let r = app.get_payment(&term, &"a".repeat(4_000)).await;
        assert_error(l, &r, 404, "invalid_request_error", "resource_missing");
    }
}
