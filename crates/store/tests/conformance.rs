//! The store conformance suite: every test runs on SQLite and on PostgreSQL
//! (when `KONBINI_TEST_PG_URL` is set; CI always sets it).

use konbini_core::Currency;
use konbini_core::ledger::{AccountKind, Entry};
use konbini_store::customers::{self, Customer, Device};
use konbini_store::ledger::{self, NewHold, Posted};
use konbini_store::testing::{TestDb, databases};
use konbini_store::{Conn, StoreError, idempotency, outbox, params, payments};

type R<T> = Result<T, StoreError>;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn each(f: impl Fn(&TestDb)) {
    for t in databases() {
        f(&t);
    }
}

fn customer(id: &str, email: &str) -> Customer {
    Customer::new(id, email, "+819012345678", "x", 1)
}

fn device(id: &str, customer_id: &str, slot: i64) -> Device {
    Device {
        id: id.into(),
        customer_id: customer_id.into(),
        slot,
        key_generation: 1,
        secret_hash: vec![1, 2, 3],
        name: "phone".into(),
        status: "bound".into(),
        last_code_counter: 0,
        created_ms: 1,
    }
}

/// Customer `cus_{x}` with device `dev_{x}` on `slot` and `balance` yen in the wallet.
async fn seed_payer(db: &konbini_store::Db, x: &'static str, slot: i64, balance: i64) {
    let _: () = db
        .write(move |c| {
            customers::insert(
                c,
                &customer(&format!("cus_{x}"), &format!("{x}@example.com")),
            )?;
            customers::insert_device(
                c,
                &device(&format!("dev_{x}"), &format!("cus_{x}"), slot),
                "sms",
            )?;
            fund(c, &format!("wallet:cus_{x}:JPY"), balance, &format!("{x}1"))
        })
        .await
        .expect("seed");
}

fn fund(conn: &mut dyn Conn, wallet: &str, amount: i64, n: &str) -> R<()> {
    let c = Currency::JPY;
    ledger::ensure_account(
        conn,
        "clearing:card:00:JPY",
        AccountKind::CardClearing,
        c,
        1,
    )?;
    ledger::ensure_account(conn, wallet, AccountKind::Wallet, c, 1)?;
    let e = Entry::transfer(
        "clearing:card:00:JPY",
        wallet,
        konbini_core::Amount::new(amount, c).expect("amount"),
    )
    .expect("entry");
    assert_eq!(
        ledger::post(conn, &format!("ent_{n}"), "topup", n, &e, 1)?,
        Posted::Ok
    );
    Ok(())
}

#[test]
fn migrations_are_idempotent() {
    for t in databases() {
        // Opening the same database again finds the schema current and changes nothing.
        let again = konbini_store::Db::open(&konbini_store::DbConfig::new(&t.url));
        assert!(again.is_ok(), "{}: reopen failed", t.label);
    }
}

#[test]
fn customers_are_unique_by_email() {
    each(|t| {
        rt().block_on(async {
            let ok: R<(bool, bool)> =
                t.db.write(|c| {
                    Ok((
                        customers::insert(c, &customer("cus_1", "a@example.com"))?,
                        customers::insert(c, &customer("cus_2", "a@example.com"))?,
                    ))
                })
                .await;
            assert_eq!(ok.expect("write"), (true, false), "{}", t.label);
            let found: R<Option<Customer>> =
                t.db.read(|c| customers::by_email(c, "a@example.com")).await;
            assert_eq!(
                found.expect("read").map(|c| c.id),
                Some("cus_1".to_string())
            );
        })
    });
}

#[test]
fn payment_code_counters_are_one_time_and_monotonic() {
    each(|t| {
        rt().block_on(async {
            let r: R<Vec<bool>> =
                t.db.write(|c| {
                    customers::insert(c, &customer("cus_1", "a@example.com"))?;
                    assert!(customers::insert_device(
                        c,
                        &device("dev_1", "cus_1", 77),
                        "sms"
                    )?);
                    // A second live device cannot take the same slot.
                    assert!(!customers::insert_device(
                        c,
                        &device("dev_2", "cus_1", 77),
                        "sms"
                    )?);
                    Ok(vec![
                        customers::consume_code(c, 77, 100)?,
                        customers::consume_code(c, 77, 100)?, // replay
                        customers::consume_code(c, 77, 99)?,  // older code, now dead
                        customers::consume_code(c, 77, 101)?,
                        customers::consume_code(c, 78, 500)?, // unknown slot
                    ])
                })
                .await;
            assert_eq!(
                r.expect("write"),
                vec![true, false, false, true, false],
                "{}",
                t.label
            );
            // A revoked device's slot accepts nothing and can be reused by a new device.
            let r: R<(bool, bool, bool)> =
                t.db.write(|c| {
                    let revoked = customers::revoke_device(c, "cus_1", "dev_1", 5)?;
                    let dead = customers::consume_code(c, 77, 1000)?;
                    let reused = customers::insert_device(c, &device("dev_3", "cus_1", 77), "sms")?;
                    Ok((revoked, dead, reused))
                })
                .await;
            assert_eq!(r.expect("write"), (true, false, true), "{}", t.label);
        })
    });
}

#[test]
fn concurrent_scans_of_one_code_spend_it_once() {
    each(|t| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .expect("rt");
        runtime.block_on(async {
            let _: () =
                t.db.write(|c| {
                    customers::insert(c, &customer("cus_1", "a@example.com"))?;
                    customers::insert_device(c, &device("dev_1", "cus_1", 5), "sms")?;
                    Ok::<_, StoreError>(())
                })
                .await
                .expect("seed");
            let mut tasks = Vec::new();
            for _ in 0..20 {
                let db = t.db.clone();
                tasks.push(tokio::spawn(async move {
                    db.write(|c| customers::consume_code(c, 5, 42)).await
                }));
            }
            let mut wins = 0;
            for task in tasks {
                if task.await.expect("join").expect("write") {
                    wins += 1;
                }
            }
            assert_eq!(wins, 1, "{}: exactly one scan may win", t.label);
        })
    });
}

#[test]
fn ledger_posts_balanced_entries_and_refuses_overdraft() {
    each(|t| {
        rt().block_on(async {
            let r: R<()> =
                t.db.write(|c| {
                    fund(c, "wallet:cus_1:JPY", 1000, "top_1")?;
                    ledger::ensure_account(
                        c,
                        "settlement:st_1:JPY",
                        AccountKind::StoreSettlement,
                        Currency::JPY,
                        1,
                    )?;
                    let pay = |x: i64| {
                        Entry::transfer(
                            "wallet:cus_1:JPY",
                            "settlement:st_1:JPY",
                            konbini_core::Amount::new(x, Currency::JPY).expect("amount"),
                        )
                        .expect("entry")
                    };
                    assert_eq!(
                        ledger::post(c, "ent_p1", "payment", "pay_1", &pay(600), 2)?,
                        Posted::Ok
                    );
                    assert_eq!(
                        ledger::post(c, "ent_p2", "payment", "pay_2", &pay(500), 2)?,
                        Posted::InsufficientFunds
                    );
                    assert_eq!(ledger::balance(c, "wallet:cus_1:JPY")?, (400, 0));
                    assert_eq!(ledger::balance(c, "settlement:st_1:JPY")?, (600, 0));
                    // Nothing of the refused entry was written.
                    let n = c
                        .query_one(
                            "SELECT COUNT(*) FROM entries WHERE id = 'ent_p2'",
                            params![],
                        )?
                        .int(0)?;
                    assert_eq!(n, 0);
                    // Holds reserve money; a second hold cannot exceed what is available.
                    let h = |id: &'static str, amt: i64| NewHold {
                        id,
                        account_id: "wallet:cus_1:JPY",
                        amount_minor: amt,
                        currency: Currency::JPY,
                        ref_id: "pay_h",
                        expires_ms: 100,
                    };
                    assert!(ledger::hold(c, &h("hold_1", 300), 3)?);
                    assert!(!ledger::hold(c, &h("hold_2", 200), 3)?);
                    assert_eq!(
                        ledger::post(c, "ent_p3", "payment", "pay_3", &pay(200), 3)?,
                        Posted::InsufficientFunds
                    );
                    assert_eq!(ledger::expired_holds(c, 100, 10)?.len(), 1);
                    assert!(ledger::release_hold(c, "hold_1", "voided")?);
                    assert!(
                        !ledger::release_hold(c, "hold_1", "voided")?,
                        "a hold ends once"
                    );
                    assert_eq!(ledger::balance(c, "wallet:cus_1:JPY")?, (400, 0));
                    Ok(())
                })
                .await;
            r.expect("write");
            let report: R<ledger::VerifyReport> = t.db.read(ledger::verify).await;
            let report = report.expect("verify");
            assert!(report.ok(), "{}: {:?}", t.label, report.problems);
            assert_eq!(report.entries, 2);
        })
    });
}

#[test]
fn ledger_verify_detects_corruption_and_postings_are_append_only() {
    each(|t| {
        rt().block_on(async {
            let _: () =
                t.db.write(|c| fund(c, "wallet:cus_1:JPY", 1000, "top_1"))
                    .await
                    .expect("fund");
            // Append-only: the database itself refuses to edit or delete postings.
            let edit: R<u64> =
                t.db.write(|c| c.exec("UPDATE postings SET amount = amount + 1", params![]))
                    .await;
            assert!(edit.is_err(), "{}: postings were editable", t.label);
            let del: R<u64> =
                t.db.write(|c| c.exec("DELETE FROM entries", params![]))
                    .await;
            assert!(del.is_err(), "{}: entries were deletable", t.label);
            // Corrupt a cached balance behind the ledger's back.
            let _: u64 =
                t.db.write(|c| {
                    c.exec(
                        "UPDATE accounts SET balance = balance + 5 WHERE id = 'wallet:cus_1:JPY'",
                        params![],
                    )
                })
                .await
                .expect("corrupt");
            let report: ledger::VerifyReport = t.db.read(ledger::verify).await.expect("verify");
            assert!(!report.ok());
            assert!(
                report
                    .problems
                    .iter()
                    .any(|p| p.contains("wallet:cus_1:JPY") && p.contains("1005")),
                "{}: {:?}",
                t.label,
                report.problems
            );
            // A succeeded payment without its entry is reported too.
            let _: () =
                t.db.write(|c| {
                    payments::insert_payment(
                        c,
                        &payments::Payment {
                            id: "pay_orphan".into(),
                            customer_id: None,
                            device_id: None,
                            store_id: "st".into(),
                            terminal_id: "term".into(),
                            amount: 10,
                            currency: "JPY".into(),
                            status: "succeeded".into(),
                            decline_code: None,
                            funding: None,
                            card_id: None,
                            processor_auth: None,
                            order_ref: "o".into(),
                            basket: "[]".into(),
                            refunded: 0,
                            hold_id: None,
                            expires_ms: None,
                            created_ms: 1,
                            updated_ms: 1,
                        },
                    )
                })
                .await
                .expect("orphan");
            let report: ledger::VerifyReport = t.db.read(ledger::verify).await.expect("verify");
            assert!(
                report.problems.iter().any(|p| p.contains("pay_orphan")),
                "{:?}",
                report.problems
            );
        })
    });
}

#[test]
fn concurrent_debits_never_overdraw_a_wallet() {
    each(|t| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .expect("rt");
        runtime.block_on(async {
            let _: () =
                t.db.write(|c| {
                    fund(c, "wallet:cus_1:JPY", 2000, "top_1")?;
                    ledger::ensure_account(
                        c,
                        "settlement:st_1:JPY",
                        AccountKind::StoreSettlement,
                        Currency::JPY,
                        1,
                    )
                })
                .await
                .expect("seed");
            let mut tasks = Vec::new();
            for i in 0..50 {
                let db = t.db.clone();
                tasks.push(tokio::spawn(async move {
                    db.write(move |c| {
                        let e = Entry::transfer(
                            "wallet:cus_1:JPY",
                            "settlement:st_1:JPY",
                            konbini_core::Amount::new(100, Currency::JPY).expect("amount"),
                        )
                        .expect("entry");
                        ledger::post(
                            c,
                            &format!("ent_{i}"),
                            "payment",
                            &format!("pay_{i}"),
                            &e,
                            2,
                        )
                    })
                    .await
                }));
            }
            let mut ok = 0;
            for task in tasks {
                if task.await.expect("join").expect("write") == Posted::Ok {
                    ok += 1;
                }
            }
            assert_eq!(ok, 20, "{}: 2000 / 100 debits fit", t.label);
            let bal: R<(i64, i64)> = t.db.read(|c| ledger::balance(c, "wallet:cus_1:JPY")).await;
            assert_eq!(bal.expect("balance"), (0, 0));
            let report: ledger::VerifyReport = t.db.read(ledger::verify).await.expect("verify");
            assert!(report.ok(), "{:?}", report.problems);
        })
    });
}

#[test]
fn a_failed_job_rolls_back_without_harming_its_batch_neighbours() {
    each(|t| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .expect("rt");
        runtime.block_on(async {
            let mut tasks = Vec::new();
            for i in 0..40 {
                let db = t.db.clone();
                tasks.push(tokio::spawn(async move {
                    db.write(move |c| {
                        if i % 4 == 3 {
                            // Fails before writing anything.
                            return Err(StoreError::Decode("refused".into()));
                        }
                        customers::insert(
                            c,
                            &customer(&format!("cus_{i}"), &format!("{i}@example.com")),
                        )?;
                        if i % 4 == 1 {
                            // Fails after writing: the customer insert above must vanish
                            // (SQLite rolls back the batch and runs the jobs before it again).
                            c.exec("INSERT INTO no_such_table VALUES (1)", params![])?;
                        }
                        Ok::<_, StoreError>(i)
                    })
                    .await
                    .is_ok_and(|got| got == i)
                }));
            }
            let mut ok = 0;
            for task in tasks {
                if task.await.expect("join") {
                    ok += 1;
                }
            }
            assert_eq!(ok, 20);
            let n: i64 =
                t.db.read(|c| {
                    c.query_one("SELECT COUNT(*) FROM customers", params![])?
                        .int(0)
                })
                .await
                .expect("count");
            assert_eq!(
                n, 20,
                "{}: exactly the successful jobs are committed",
                t.label
            );
        })
    });
}

#[test]
fn idempotency_claims() {
    each(|t| {
        rt().block_on(async {
            let r: R<Vec<idempotency::Claim>> =
                t.db.write(|c| {
                    let a = idempotency::claim(c, "cus_1", "k1", b"hash-a", 1)?;
                    let b = idempotency::claim(c, "cus_1", "k1", b"hash-a", 1)?;
                    idempotency::complete(c, "cus_1", "k1", 201, "{\"id\":1}")?;
                    let d = idempotency::claim(c, "cus_1", "k1", b"hash-a", 1)?;
                    let e = idempotency::claim(c, "cus_1", "k1", b"hash-b", 1)?;
                    let f = idempotency::claim(c, "cus_2", "k1", b"hash-b", 1)?; // other scope
                    Ok(vec![a, b, d, e, f])
                })
                .await;
            use idempotency::Claim::*;
            assert_eq!(
                r.expect("write"),
                vec![
                    New,
                    InFlight,
                    Replay {
                        status: 201,
                        body: "{\"id\":1}".into()
                    },
                    Mismatch,
                    New
                ],
                "{}",
                t.label
            );
        })
    });
}

#[test]
fn outbox_and_activity_pages() {
    each(|t| {
        rt().block_on(async {
            let r: R<()> =
                t.db.write(|c| {
                    for i in 0..5 {
                        outbox::enqueue(
                            c,
                            &format!("evt_{i}"),
                            "payment.succeeded",
                            "pay_1",
                            "{}",
                            i,
                        )?;
                        payments::insert_activity(
                            c,
                            &payments::Activity {
                                id: format!("pay_{i}"),
                                customer_id: "cus_1".into(),
                                kind: "payment".into(),
                                amount: -100,
                                currency: "JPY".into(),
                                status: "succeeded".into(),
                                description: "lunch".into(),
                                created_ms: 10 + i / 2,
                            },
                        )?;
                    }
                    Ok(())
                })
                .await;
            r.expect("write");
            let r: R<(Vec<outbox::Event>, Vec<String>)> =
                t.db.read(|c| {
                    let ev = outbox::pending(c, 3)?;
                    let mut seen = Vec::new();
                    let mut cursor = None;
                    loop {
                        let page = payments::activity_page(c, "cus_1", cursor.clone(), 2)?;
                        if page.is_empty() {
                            break;
                        }
                        seen.extend(page.iter().map(|a| a.id.clone()));
                        let last = &page[page.len() - 1];
                        cursor = Some((last.created_ms, last.id.clone()));
                    }
                    Ok((ev, seen))
                })
                .await;
            let (ev, seen) = r.expect("read");
            assert_eq!(ev.len(), 3);
            assert_eq!(ev[0].id, "evt_0");
            assert_eq!(
                seen,
                vec!["pay_4", "pay_3", "pay_2", "pay_1", "pay_0"],
                "{}",
                t.label
            );
        })
    });
}

#[test]
fn the_audit_chain_detects_edits_and_deletions() {
    each(|t| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .expect("rt");
        runtime.block_on(async {
            // Concurrent appends still form one chain.
            let mut tasks = Vec::new();
            for i in 0..20 {
                let db = t.db.clone();
                tasks.push(tokio::spawn(async move {
                    db.write(move |c| {
                        konbini_store::audit::append(
                            c,
                            "cli",
                            "store.added",
                            &format!("ST{i}"),
                            "{}",
                            i,
                        )
                    })
                    .await
                }));
            }
            for task in tasks {
                task.await.expect("join").expect("append");
            }
            let report =
                t.db.read(konbini_store::audit::verify)
                    .await
                    .expect("verify");
            assert!(
                report.problems.is_empty(),
                "{}: {:?}",
                t.label,
                report.problems
            );
            assert_eq!(report.records, 20);
            // The log refuses edits through the database's own rules...
            let edit: R<u64> =
                t.db.write(|c| c.exec("UPDATE audit_log SET actor = 'x'", params![]))
                    .await;
            assert!(edit.is_err(), "{}: the audit log was editable", t.label);
            // ...so a tamperer must first remove them, as a database owner can. Then verify notices.
            let disable: &'static str = match t.label {
                "sqlite" => "DROP TRIGGER audit_append_only_u",
                _ => "ALTER TABLE audit_log DISABLE TRIGGER audit_append_only",
            };
            let disable_delete: &'static str = match t.label {
                "sqlite" => "DROP TRIGGER audit_append_only_d",
                _ => "SELECT 1",
            };
            let _: u64 =
                t.db.write(move |c| {
                    c.exec(disable, params![])?;
                    c.exec(disable_delete, params![])?;
                    c.exec(
                        "UPDATE audit_log SET subject = 'ST-forged' WHERE seq = 7",
                        params![],
                    )
                })
                .await
                .expect("tamper");
            let report =
                t.db.read(konbini_store::audit::verify)
                    .await
                    .expect("verify");
            assert!(
                report
                    .problems
                    .iter()
                    .any(|p| p.contains("record 7 was altered")),
                "{}: {:?}",
                t.label,
                report.problems
            );
            let _: u64 =
                t.db.write(|c| c.exec("DELETE FROM audit_log WHERE seq = 12", params![]))
                    .await
                    .expect("delete");
            let report =
                t.db.read(konbini_store::audit::verify)
                    .await
                    .expect("verify");
            assert!(
                report
                    .problems
                    .iter()
                    .any(|p| p.contains("12") && p.contains("missing")),
                "{}: {:?}",
                t.label,
                report.problems
            );
        })
    });
}

#[test]
fn risk_counters_slide_and_cases_stay_one_per_customer() {
    use konbini_store::risk;
    each(|t| {
        rt().block_on(async {
            let l = t.label;
            let t0: i64 = 1_795_564_800_000; // on a 7-day boundary? no matter: windows slide
            let r: R<()> =
                t.db.write(move |c| {
                    customers::insert(c, &customer("cus_1", "a@example.com"))?;
                    let s = ["cus:cus_1:pay", "dev:d:pay", "store:s:pay", "term:t:pay"];
                    for i in 0..6 {
                        risk::add(c, &s[..2], 1_000, t0 + i * 60_000)?;
                        risk::add(c, &s[2..], 1_000, t0 + i * 60_000)?;
                    }
                    risk::add(c, &["cus:cus_1:top", "card:ff:top"], 5_000, t0)?;
                    risk::add(c, &["term:t:pay"], 1_000, t0 + 5 * 60_000)?;
                    let v = risk::velocities(c, s, t0 + 5 * 60_000)?;
                    assert_eq!(v[0].count[1], 6, "{l}: six payments within the hour");
                    assert_eq!(v[0].sum[1], 6_000, "{l}");
                    assert_eq!(v[2].count[3], 6, "{l}: the store saw them too");
                    assert_eq!(v[3].count[3], 7, "{l}: one more at the terminal");
                    // Within the 10-minute window's next bucket, the previous one fades out
                    // as it slides; after two buckets it is gone.
                    let next_bucket = (t0 / 600_000 + 1) * 600_000;
                    let fading = risk::velocities(c, s, next_bucket + 300_000)?;
                    assert!(
                        fading[0].count[0] < 6 && fading[0].count[0] > 0,
                        "{l}: {fading:?}"
                    );
                    let gone = risk::velocities(c, s, next_bucket + 600_000)?;
                    assert_eq!(gone[0].count[0], 0, "{l}");
                    // An event in a later bucket rolls the row forward: the old bucket becomes
                    // the previous one, and the window sees both.
                    risk::add(c, &["cus:cus_2:top"], 5_000, t0)?;
                    risk::add(c, &["cus:cus_2:top"], 7_000, t0 + 600_000)?;
                    let rolled = risk::velocities(c, ["cus:cus_2:top", "", "", ""], t0 + 600_000)?;
                    assert_eq!(rolled[0].sum[1], 12_000, "{l}: both in the hour");
                    assert!(
                        rolled[0].sum[0] >= 7_000 && rolled[0].sum[0] <= 12_000,
                        "{l}"
                    );
                    let top = risk::velocities(c, ["cus:cus_1:top", "card:ff:top", "", ""], t0)?;
                    assert_eq!(
                        (top[0].count[0], top[1].sum[0], top[2].count[0]),
                        (1, 5_000, 0)
                    );
                    // Two hours later the 1-hour window is empty; the 24-hour one is not.
                    let later = risk::velocities(c, s, t0 + 2 * 3_600_000 + 600_000)?;
                    assert_eq!(later[0].count[1], 0, "{l}");
                    assert_eq!(later[0].count[2], 6, "{l}");
                    // Profiles accumulate.
                    let place = |store_id, at, now_ms, day| risk::PaymentPlace {
                        store_id,
                        at,
                        now_ms,
                        day,
                        month: 7,
                    };
                    risk::record_payment(
                        c,
                        "wallet:cus_1:JPY",
                        800,
                        place("s", Some((35_000_000, 139_000_000)), t0, 1),
                    )?;
                    risk::record_payment(
                        c,
                        "wallet:cus_1:JPY",
                        1_200,
                        place("s2", None, t0 + 1, 2),
                    )?;
                    let p = risk::profile(c, "wallet:cus_1:JPY")?;
                    assert_eq!(
                        (p.payments, p.payments_total, p.payments_max),
                        (2, 2_000, 1_200)
                    );
                    assert_eq!(p.last_store_id.as_deref(), Some("s2"));
                    assert_eq!(
                        p.totals(2, 7),
                        (1_200, 2_000),
                        "{l}: a new day, the same month"
                    );
                    assert_eq!(p.totals(3, 8), (0, 0), "{l}");
                    // One open case per customer, extended by later decisions.
                    let a = risk::open_or_extend_case(c, "case_a", "cus_1", t0)?;
                    let b = risk::open_or_extend_case(c, "case_b", "cus_1", t0 + 1)?;
                    assert_eq!((a.as_str(), b.as_str()), ("case_a", "case_a"), "{l}");
                    assert_eq!(risk::case_by_id(c, "case_a")?.map(|k| k.decisions), Some(2));
                    assert!(risk::resolve_case(
                        c,
                        "case_a",
                        "fraud",
                        "confirmed",
                        t0 + 2
                    )?);
                    let next = risk::open_or_extend_case(c, "case_c", "cus_1", t0 + 3)?;
                    assert_eq!(next, "case_c", "{l}: a resolved case is not reopened");
                    // Rules keep every version; a concurrent save of the same version loses.
                    let rule = risk::RuleRecord {
                        name: "r1".into(),
                        version: 1,
                        description: "d".into(),
                        source: "review when payment.amount > 1".into(),
                        priority: 10,
                        mode: "shadow".into(),
                        enabled: true,
                        updated_ms: t0,
                        updated_by: "staff_1".into(),
                    };
                    assert!(risk::save_rule(c, &rule)?);
                    assert!(!risk::save_rule(c, &rule)?);
                    let v2 = risk::RuleRecord {
                        version: 2,
                        mode: "live".into(),
                        ..rule
                    };
                    assert!(risk::save_rule(c, &v2)?);
                    assert_eq!(risk::rules(c)?, vec![v2]);
                    assert_eq!(risk::rules_fingerprint(c)?, (2, 3));
                    Ok(())
                })
                .await;
            r.expect("risk state");
        })
    });
}

#[test]
fn counting_from_the_row_as_read_matches_counting_in_sql() {
    use konbini_store::risk::{self, Windows};
    each(|t| {
        rt().block_on(async {
            let l = t.label;
            let r: R<()> =
                t.db.write(move |c| {
                    // Gaps from a second to more than a week cross every window's bucket
                    // boundaries: same bucket, the next one, and older.
                    let gaps = [1_000, 59_000, 600_000, 1, 3_600_000, 86_400_000, 300_000];
                    let gaps = gaps.iter().chain(&[604_800_000, 7_000, 1_209_600_000, 2]);
                    let mut now: i64 = 1_795_564_799_000;
                    let mut expected: Option<Windows> = None;
                    for (i, gap) in gaps.enumerate() {
                        now += gap;
                        let amount = 100 + i as i64 * 37;
                        risk::add(c, &["store:s:pay"], amount, now)?;
                        let want = expected.map_or_else(
                            || Windows::first(amount, now),
                            |w| w.counted(amount, now),
                        );
                        let stored = risk::windows_of(c, "store:s:pay")?;
                        assert_eq!(stored, Some(want), "{l}: event {i} at +{gap} ms");
                        expected = Some(want);
                    }
                    assert_eq!(risk::windows_of(c, "store:none:pay")?, None, "{l}");
                    Ok(())
                })
                .await;
            r.unwrap_or_else(|e| panic!("{l}: {e}"));
        })
    });
}

/// The store's and terminal's counts are kept in memory and written behind
/// (`risk::Unwritten`): what a decision sees before the write (the row as stored with the
/// unwritten events on top), what the row holds after it, and counting the same events one
/// by one in SQL all agree, across bucket boundaries and over a row that already exists.
#[test]
fn counts_written_behind_equal_counts_written_one_by_one() {
    use konbini_store::risk::{self, Unwritten};
    each(|t| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("rt");
        runtime.block_on(async {
            let l = t.label;
            let r: R<()> =
                t.db.write(move |c| {
                    let mut now: i64 = 1_795_564_799_000;
                    // Rounds of events a few hundred ms apart, some crossing a 10-minute,
                    // hour or day boundary (several groups in one round), rounds written
                    // in between.
                    let rounds: [&[i64]; 4] = [
                        &[100, 250, 400],
                        &[1_000, 600_000, 1],
                        &[3_600_000, 86_400_000, 2, 3],
                        &[1_209_600_000, 5],
                    ];
                    for (round, gaps) in rounds.iter().enumerate() {
                        let mut unwritten = Unwritten::default();
                        for (i, gap) in gaps.iter().enumerate() {
                            now += gap;
                            let amount = 100 + (round * 10 + i) as i64 * 37;
                            unwritten.count(amount, now);
                            risk::add(c, &["store:one-by-one:pay"], amount, now)?;
                        }
                        let stored = risk::windows_of(c, "store:behind:pay")?;
                        let seen = unwritten.on(stored);
                        risk::write_unwritten(c, "store:behind:pay", &unwritten)?;
                        let written = risk::windows_of(c, "store:behind:pay")?;
                        let want = risk::windows_of(c, "store:one-by-one:pay")?;
                        assert!(want.is_some(), "{l}");
                        assert_eq!(seen, want, "{l}: round {round}, before the write");
                        assert_eq!(written, want, "{l}: round {round}, after the write");
                    }
                    // Nothing counted: the row as stored.
                    let stored = risk::windows_of(c, "store:behind:pay")?;
                    assert_eq!(Unwritten::default().on(stored), stored, "{l}");
                    assert_eq!(Unwritten::default().on(None), None, "{l}");
                    Ok(())
                })
                .await;
            r.unwrap_or_else(|e| panic!("{l}: {e}"));
        })
    });
}

#[test]
fn concurrent_payments_never_lose_a_count() {
    use konbini_store::risk;
    each(|t| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("rt");
        runtime.block_on(async {
            let t0: i64 = 1_795_564_800_000;
            let _: () =
                t.db.write(|c| {
                    customers::insert(c, &customer("cus_c", "c@example.com"))?;
                    Ok::<_, StoreError>(())
                })
                .await
                .expect("seed");
            // 200 payments at one store and terminal by one customer, 8 at a time: every
            // increment happens in SQL on the stored row, so none is lost to another.
            let mut tasks = Vec::new();
            for i in 0..200 {
                let db = t.db.clone();
                tasks.push(tokio::spawn(async move {
                    db.write(move |c| {
                        risk::add(c, &["store:s:pay", "term:t:pay"], 100, t0 + i)?;
                        let place = risk::PaymentPlace {
                            store_id: "s",
                            at: None,
                            now_ms: t0 + i,
                            day: 1,
                            month: 1,
                        };
                        risk::record_payment(c, "wallet:cus_c:JPY", 100, place)
                    })
                    .await
                }));
            }
            for task in tasks {
                task.await.expect("join").expect("write");
            }
            let v =
                t.db.read(move |c| {
                    risk::velocities(c, ["store:s:pay", "term:t:pay", "", ""], t0 + 1_000)
                })
                .await
                .expect("read");
            assert_eq!((v[0].count[0], v[0].sum[0]), (200, 20_000), "{}", t.label);
            assert_eq!((v[1].count[3], v[1].sum[3]), (200, 20_000), "{}", t.label);
            let p =
                t.db.read(|c| risk::profile(c, "wallet:cus_c:JPY"))
                    .await
                    .expect("profile");
            assert_eq!(
                (p.payments, p.payments_total, p.totals(1, 1)),
                (200, 20_000, (20_000, 20_000)),
                "{}",
                t.label
            );
        })
    });
}

/// Succeeded wallet payment `pay_{n}` of `amount` at `at` by customer `cus_{x}` (or, without
/// `with_customer`, a payment whose code matched no customer), at store `st_{x}`.
fn wallet_payment(
    n: &str,
    x: &str,
    with_customer: bool,
    amount: i64,
    at: i64,
) -> payments::Payment {
    payments::Payment {
        id: format!("pay_{n}"),
        customer_id: with_customer.then(|| format!("cus_{x}")),
        device_id: with_customer.then(|| format!("dev_{x}")),
        store_id: format!("st_{x}"),
        terminal_id: format!("term_{x}"),
        amount,
        currency: "JPY".into(),
        status: "succeeded".into(),
        decline_code: None,
        funding: Some("wallet".into()),
        card_id: None,
        processor_auth: None,
        order_ref: n.into(),
        basket: "[]".into(),
        refunded: 0,
        hold_id: None,
        expires_ms: None,
        created_ms: at,
        updated_ms: at,
    }
}

/// Rows in the tables a wallet payment writes (payments, activity, outbox, idempotency,
/// journal lines wherever they are, entries, postings).
fn written(c: &mut dyn Conn) -> R<Vec<i64>> {
    let mut n = Vec::new();
    for sql in [
        "SELECT COUNT(*) FROM payments",
        "SELECT COUNT(*) FROM activity",
        "SELECT COUNT(*) FROM outbox",
        "SELECT COUNT(*) FROM idempotency",
        "SELECT (SELECT COUNT(*) FROM risk_decisions) + (SELECT COUNT(*) FROM payments WHERE risk_features IS NOT NULL)",
        "SELECT COUNT(*) FROM entries",
        "SELECT COUNT(*) FROM postings",
    ] {
        n.push(c.query_one(sql, params![])?.int(0)?);
    }
    Ok(n)
}

#[test]
fn the_single_statement_payment_commits_all_of_it_or_nothing() {
    use konbini_core::ledger as rules;
    use konbini_store::payments::{PaidAlone, WalletPost};
    use konbini_store::risk;
    each(|t| {
        rt().block_on(async {
            let now: i64 = 1_795_564_800_000;
            seed_payer(&t.db, "s", 31, 1_000).await;
            // One attempt: code `counter`, `amount`, under idempotency key `key`, counting
            // from the profile and device rows read at the start of the job, as the till's
            // context reads them; `stale` takes that many payments off the profile's count
            // and the device's last code as read (another payment wrote them in between).
            let pay_stale = |counter: i64,
                             amount: i64,
                             key: &'static str,
                             n: &'static str,
                             stale: (i64, i64)| {
                let db = t.db.clone();
                async move {
                    db.write(move |c| {
                        let mut profile = risk::profile(c, "wallet:cus_s:JPY")?;
                        profile.payments -= stale.0;
                        // The profile and its windows live on the wallet.
                        let customer_windows =
                            risk::windows_of_profile(c, "wallet:cus_s:JPY")?.unwrap_or_default();
                        let device_windows = risk::windows_of_device(c, "dev_s")?;
                        let device_code_counter = customers::device_by_id(c, "dev_s")?
                            .map_or(0, |d| d.last_code_counter)
                            - stale.1;
                        let wallet = "wallet:cus_s:JPY";
                        let settlement = rules::store_settlement_account("st_s", Currency::JPY);
                        let entry = Entry::transfer(
                            wallet,
                            &settlement,
                            konbini_core::Amount::new(amount, Currency::JPY).expect("amount"),
                        )
                        .expect("entry");
                        let p = wallet_payment(n, "s", true, amount, now);
                        let activity = payments::Activity {
                            id: p.id.clone(),
                            customer_id: "cus_s".into(),
                            kind: "payment".into(),
                            amount: -amount,
                            currency: "JPY".into(),
                            status: "succeeded".into(),
                            description: "Payment".into(),
                            created_ms: now,
                        };
                        let event = outbox::NewEvent {
                            id: format!("evt_{n}"),
                            topic: "payment.succeeded".into(),
                            aggregate_id: p.id.clone(),
                            payload: "{}".into(),
                            created_ms: now,
                        };
                        let decision = risk::DecisionRecord {
                            id: format!("rd_{n}"),
                            at_ms: now,
                            customer_id: Some("cus_s".into()),
                            event_kind: "payment".into(),
                            ref_id: Some(p.id.clone()),
                            outcome: "allow".into(),
                            decided_by: None,
                            fired: "[]".into(),
                            shadow: "[]".into(),
                            features: "{}".into(),
                            case_id: None,
                        };
                        let features = konbini_core::risk::Features::new();
                        let risk = risk::PaymentRisk {
                            decision: &decision,
                            features: &features,
                            counted: Some(risk::PaymentCount {
                                // The hot path counts the store and terminal in memory.
                                subjects: None,
                                device_id: "dev_s",
                                wallet_id: "wallet:cus_s:JPY",
                                amount,
                                place: risk::PaymentPlace {
                                    store_id: "st_s",
                                    at: None,
                                    now_ms: now,
                                    day: 1,
                                    month: 1,
                                },
                                read: Some(risk::CountedRows {
                                    profile: &profile,
                                    windows: [Some(customer_windows), Some(device_windows)],
                                    device_counted: false,
                                    device_code_counter,
                                    profile_counted: false,
                                }),
                            }),
                        };
                        payments::pay_and_record_alone(
                            c,
                            &WalletPost {
                                slot: 31,
                                counter,
                                entry_id: &format!("ent_{n}"),
                                entry: &entry,
                            },
                            &p,
                            &activity,
                            &event,
                            &payments::IdempotencyRecord {
                                scope: "term_s",
                                key,
                                request_hash: b"h",
                                status: 201,
                                body: "{}",
                            },
                            Some(&risk),
                        )
                    })
                    .await
                }
            };
            let pay = |counter: i64, amount: i64, key: &'static str, n: &'static str| {
                pay_stale(counter, amount, key, n, (0, 0))
            };
            let state = |db: konbini_store::Db| async move {
                db.read(|c| {
                    let balance = ledger::balance(c, "wallet:cus_s:JPY")?.0;
                    let counter =
                        customers::device_by_id(c, "dev_s")?.map_or(-1, |d| d.last_code_counter);
                    let profile = risk::profile(c, "wallet:cus_s:JPY")?.payments;
                    Ok::<_, StoreError>((balance, counter, profile, written(c)?))
                })
                .await
                .expect("state")
            };
            let paid = pay(5, 300, "k1", "a").await.expect("pay");
            if t.db.backend() == konbini_store::Backend::Sqlite {
                // The embedded database has no round trips to save: the general path serves.
                assert_eq!(paid, None, "{}", t.label);
                return;
            }
            assert_eq!(paid, Some(PaidAlone::Paid), "{}", t.label);
            let after_paid = state(t.db.clone()).await;
            assert_eq!(
                (after_paid.0, after_paid.1, after_paid.2),
                (700, 5, 1),
                "{}",
                t.label
            );
            // The payment, its activity line, event, idempotency record and journal line; the
            // top-up's entry and the payment's, two postings each.
            assert_eq!(after_paid.3, [1, 1, 1, 1, 1, 2, 4], "{}", t.label);
            // The device counted on its row; the store and terminal are left to the caller
            // (counted in memory and written behind).
            let (device, store) =
                t.db.read(move |c| {
                    let device = risk::windows_of_device(c, "dev_s")?.velocity(now + 1);
                    let store = risk::windows_of(c, "store:st_s:pay")?;
                    Ok::<_, StoreError>((device, store))
                })
                .await
                .expect("read");
            assert_eq!(
                (device.count[0], device.sum[0], device.count[3], store),
                (1, 300, 1, None),
                "{}",
                t.label
            );
            // Too much for the wallet: undone whole, the code not even spent.
            let short = pay(6, 5_000, "k2", "b").await.expect("pay");
            assert_eq!(short, Some(PaidAlone::NotPaid), "{}", t.label);
            assert_eq!(state(t.db.clone()).await, after_paid, "{}", t.label);
            // A replayed code: nothing written.
            let replay = pay(5, 100, "k3", "c").await.expect("pay");
            assert_eq!(replay, Some(PaidAlone::CodeRejected), "{}", t.label);
            assert_eq!(state(t.db.clone()).await, after_paid, "{}", t.label);
            // The idempotency key recorded by another request meanwhile: undone whole.
            let race = pay(7, 100, "k1", "d").await.expect("pay");
            assert_eq!(race, Some(PaidAlone::Race), "{}", t.label);
            assert_eq!(state(t.db.clone()).await, after_paid, "{}", t.label);
            // A job that goes on writing after the statement wrote nothing runs in a
            // transaction again: its failure undoes what it wrote.
            let failed: Result<(), StoreError> =
                t.db.write(|c| {
                    customers::consume_code(c, 31, 8)?;
                    Err(StoreError::Decode("fails after writing".into()))
                })
                .await;
            assert!(failed.is_err());
            assert_eq!(state(t.db.clone()).await, after_paid, "{}", t.label);
            // The engine's writes are computed from the rows as read, each guarded: when
            // another payment wrote the profile since, or the device, nothing is written and
            // the caller's general path (which reads the rows locked) takes the payment. The
            // profile is written by the wallet's debit, so a stale one stops the debit, as a
            // short wallet does.
            let stale_profile = pay_stale(9, 100, "k4", "e", (1, 0)).await.expect("pay");
            assert_eq!(stale_profile, Some(PaidAlone::NotPaid), "{}", t.label);
            assert_eq!(state(t.db.clone()).await, after_paid, "{}", t.label);
            let stale_device = pay_stale(9, 100, "k5", "f", (0, 1)).await.expect("pay");
            assert_eq!(stale_device, Some(PaidAlone::CodeRejected), "{}", t.label);
            assert_eq!(state(t.db.clone()).await, after_paid, "{}", t.label);
            let report = t.db.read(ledger::verify).await.expect("verify");
            assert!(report.ok(), "{}: {report:?}", t.label);
        })
    });
}

#[test]
fn spending_a_code_can_count_the_payment_on_the_device_row() {
    use konbini_core::ledger as rules;
    use konbini_store::risk;
    each(|t| {
        rt().block_on(async {
            let now: i64 = 1_795_564_800_000;
            seed_payer(&t.db, "d", 41, 500).await;
            // One payment of `amount` with code `counter`, counting it on the device from the
            // windows as they stand (read in the same job, as the till's job does).
            let pay = |counter: i64, amount: i64, n: &'static str| {
                let db = t.db.clone();
                async move {
                    db.write(move |c| {
                        let windows = risk::windows_of_device(c, "dev_d")?;
                        let entry = Entry::transfer(
                            "wallet:cus_d:JPY",
                            &rules::store_settlement_account("st_d", Currency::JPY),
                            konbini_core::Amount::new(amount, Currency::JPY).expect("amount"),
                        )
                        .expect("entry");
                        ledger::spend_code_and_post(
                            c,
                            41,
                            counter,
                            &format!("ent_{n}"),
                            "payment",
                            n,
                            &entry,
                            now,
                            Some(&risk::DeviceCount {
                                device_id: "dev_d",
                                windows,
                                amount,
                                now_ms: now,
                            }),
                            None,
                        )
                    })
                    .await
                    .expect("pay")
                }
            };
            let state = |db: konbini_store::Db| async move {
                db.read(|c| {
                    let counter =
                        customers::device_by_id(c, "dev_d")?.map_or(-1, |d| d.last_code_counter);
                    let w = risk::windows_of_device(c, "dev_d")?;
                    let balance = ledger::balance(c, "wallet:cus_d:JPY")?.0;
                    Ok::<_, StoreError>((counter, w.n[0], w.total[0], balance))
                })
                .await
                .expect("state")
            };
            use ledger::CodeAndPost::*;
            assert_eq!(pay(3, 200, "p1").await, Posted, "{}", t.label);
            // SQLite counts in the row write that spends the code; PostgreSQL leaves counting
            // to the payment's record (or its single statement), so nothing here.
            let counted = i64::from(t.db.backend() == konbini_store::Backend::Sqlite);
            assert_eq!(
                state(t.db.clone()).await,
                (3, counted, 200 * counted, 300),
                "{}",
                t.label
            );
            // Short: the code is spent, nothing counted, the wallet untouched.
            assert_eq!(pay(4, 1_000, "p2").await, InsufficientFunds, "{}", t.label);
            assert_eq!(
                state(t.db.clone()).await,
                (4, counted, 200 * counted, 300),
                "{}",
                t.label
            );
            // A replayed code: nothing at all.
            assert_eq!(pay(4, 100, "p3").await, CodeRejected, "{}", t.label);
            assert_eq!(
                state(t.db.clone()).await,
                (4, counted, 200 * counted, 300),
                "{}",
                t.label
            );
            let report = t.db.read(ledger::verify).await.expect("verify");
            assert!(report.ok(), "{}: {report:?}", t.label);
        })
    });
}

/// A payment the engine simply allowed is journaled on its payment row; every other
/// decision in `risk_decisions`. The journal reads the same through both, by customer and by
/// time, page by page, each decision once.
#[test]
fn plain_payment_decisions_are_journaled_on_their_payment_rows() {
    use konbini_store::risk::{self, DecisionRecord};
    each(|t| {
        rt().block_on(async {
            seed_payer(&t.db, "j", 41, 10_000).await;
            // (id suffix, time, rules fired, the customer on the payment row)
            let cases = [
                ("0a", 1_000, "[]", true),
                ("0b", 1_000, "[\"big\"]", true),
                ("0c", 1_000, "[]", false),
                ("0d", 2_000, "[]", true),
                ("0e", 3_000, "[]", true),
            ];
            // The features each payment's decision saw (its amount), and their journal text.
            let features = |at: i64| {
                let mut f = konbini_core::risk::Features::new();
                f.set_money(konbini_core::risk::MoneyFeature::PaymentAmount, at);
                f
            };
            let decision =
                |n: &str, at: i64, kind: &'static str, fired: &'static str| DecisionRecord {
                    id: format!("rd_{n}"),
                    at_ms: at,
                    customer_id: Some("cus_j".into()),
                    event_kind: kind.into(),
                    ref_id: Some(format!("pay_{n}")),
                    outcome: "allow".into(),
                    decided_by: None,
                    fired: fired.into(),
                    shadow: "[]".into(),
                    features: features(at).journal_string(),
                    case_id: None,
                };
            let mut expected = vec![decision("09", 1_000, "topup", "[]")];
            for (n, at, fired, on_row) in cases {
                let d = decision(n, at, "payment", fired);
                let p = wallet_payment(n, "j", on_row, at, at);
                let journaled_on_row = risk::journaled_on_payment(&d, &p);
                assert_eq!(journaled_on_row, on_row && fired == "[]", "{n}");
                // The writer is given the features, not their text.
                let written = DecisionRecord {
                    features: String::new(),
                    ..d.clone()
                };
                let seen = features(at);
                t.db.write(move |c| {
                    let activity = payments::Activity {
                        id: p.id.clone(),
                        customer_id: "cus_j".into(),
                        kind: "payment".into(),
                        amount: -p.amount,
                        currency: "JPY".into(),
                        status: "succeeded".into(),
                        description: "Payment".into(),
                        created_ms: p.created_ms,
                    };
                    let event = outbox::NewEvent {
                        id: format!("evt_{}", p.order_ref),
                        topic: "payment.succeeded".into(),
                        aggregate_id: p.id.clone(),
                        payload: "{}".into(),
                        created_ms: p.created_ms,
                    };
                    let counted = risk::PaymentCount {
                        subjects: None,
                        device_id: "dev_j",
                        wallet_id: "wallet:cus_j:JPY",
                        amount: p.amount,
                        place: risk::PaymentPlace {
                            store_id: "st_j",
                            at: None,
                            now_ms: p.created_ms,
                            day: 1,
                            month: 1,
                        },
                        read: None,
                    };
                    let recorded = payments::insert_payment_recorded(
                        c,
                        &p,
                        Some(&activity),
                        &event,
                        &payments::IdempotencyRecord {
                            scope: "term_j",
                            key: &p.order_ref,
                            request_hash: b"h",
                            status: 201,
                            body: "{}",
                        },
                        Some(&risk::PaymentRisk {
                            decision: &written,
                            features: &seen,
                            counted: Some(counted),
                        }),
                    )?;
                    assert!(recorded);
                    Ok::<_, StoreError>(())
                })
                .await
                .expect("payment");
                expected.push(DecisionRecord {
                    // Read back under its payment's id, as the server names it.
                    id: if journaled_on_row {
                        risk::decision_id_on_payment(&format!("pay_{n}"))
                    } else {
                        d.id.clone()
                    },
                    ..d
                });
            }
            let topup = expected[0].clone();
            t.db.write(move |c| risk::insert_decision(c, &topup))
                .await
                .expect("top-up decision");
            expected.sort_by(|a, b| (a.at_ms, &a.id).cmp(&(b.at_ms, &b.id)));
            let profile =
                t.db.read(|c| risk::profile(c, "wallet:cus_j:JPY"))
                    .await
                    .expect("profile");
            assert_eq!(
                (
                    profile.payments,
                    profile.payments_total,
                    profile.payments_max
                ),
                (5, 8_000, 3_000),
                "{}: every payment counted once",
                t.label
            );
            let (rows, on_payments, by_customer, paged, first_ms) =
                t.db.read(|c| {
                    let rows = c
                        .query_one("SELECT COUNT(*) FROM risk_decisions", params![])?
                        .int(0)?;
                    let on_payments = c
                        .query_one(
                            "SELECT COUNT(*) FROM payments WHERE risk_features IS NOT NULL",
                            params![],
                        )?
                        .int(0)?;
                    let by_customer = risk::decisions_of(c, "cus_j", 100)?;
                    let mut paged: Vec<DecisionRecord> = Vec::new();
                    loop {
                        let after = paged.last().map(|d| (d.at_ms, d.id.as_str()));
                        let page = risk::decisions_page(c, 0, 10_000, after, 2)?;
                        if page.is_empty() {
                            break;
                        }
                        paged.extend(page);
                    }
                    let first_ms = risk::decisions_page(c, 1_000, 2_000, None, 100)?;
                    Ok::<_, StoreError>((rows, on_payments, by_customer, paged, first_ms))
                })
                .await
                .expect("journal");
            // The top-up, the payment on which a rule fired, and the one whose customer is
            // not on its row have rows of their own; the three plain ones are on their payments.
            assert_eq!((rows, on_payments), (3, 3), "{}", t.label);
            assert_eq!(paged, expected, "{}", t.label);
            let newest_first: Vec<DecisionRecord> = expected.iter().rev().cloned().collect();
            assert_eq!(by_customer, newest_first, "{}", t.label);
            let at_1000: Vec<DecisionRecord> = expected
                .iter()
                .filter(|d| d.at_ms == 1_000)
                .cloned()
                .collect();
            assert_eq!(first_ms, at_1000, "{}", t.label);
        })
    });
}

/// A customer's risk profile lives on its wallet account, empty before the first payment.
/// Counting a payment from the rows as the till's context read them, or from the rows read
/// when counting, gives the same profile; a customer without a wallet account yet (paying by
/// card before any top-up) gets one opened, empty, to carry it.
#[test]
fn a_customers_profile_lives_on_its_wallet() {
    use konbini_store::risk::{self, CountedRows, PaymentCount, PaymentPlace, Profile, Windows};
    each(|t| {
        rt().block_on(async {
            seed_payer(&t.db, "p", 51, 1_000).await;
            seed_payer(&t.db, "q", 52, 1_000).await;
            let now: i64 = 1_795_564_800_000;
            let l = t.label;
            let r: R<()> =
                t.db.write(move |c| {
                    assert_eq!(
                        risk::profile(c, "wallet:cus_p:JPY")?,
                        Profile::default(),
                        "{l}"
                    );
                    // A device is bound with its windows written (empty), so that its first
                    // counted payment does not grow its row by the whole value.
                    let bound = c.query_one(
                        "SELECT windows FROM devices WHERE id = $1",
                        params!["dev_p"],
                    )?;
                    assert_eq!(
                        Windows::unpacked(&bound.bytes(0)?)?,
                        Windows::default(),
                        "{l}"
                    );
                    fn count<'a>(
                        wallet_id: &'a str,
                        device_id: &'a str,
                        now: i64,
                        read: Option<CountedRows<'a>>,
                    ) -> PaymentCount<'a> {
                        PaymentCount {
                            subjects: None,
                            device_id,
                            wallet_id,
                            amount: 700,
                            place: PaymentPlace {
                                store_id: "st_1",
                                at: None,
                                now_ms: now,
                                day: 3,
                                month: 4,
                            },
                            read,
                        }
                    }
                    // The first payment of `p` from its rows as read (an empty profile), of
                    // `q` from its rows read now, and of `r`, who has no wallet yet.
                    let empty = Profile::default();
                    risk::count_payment(
                        c,
                        &count(
                            "wallet:cus_p:JPY",
                            "dev_p",
                            now,
                            Some(CountedRows {
                                profile: &empty,
                                windows: [Some(Windows::default()), Some(Windows::default())],
                                device_counted: false,
                                device_code_counter: 0,
                                profile_counted: false,
                            }),
                        ),
                    )?;
                    risk::count_payment(c, &count("wallet:cus_q:JPY", "dev_q", now, None))?;
                    risk::count_payment(c, &count("wallet:cus_r:JPY", "dev_q", now, None))?;
                    let state = |c: &mut dyn Conn, id: &str| -> R<(Profile, Vec<i64>)> {
                        let w = risk::windows_of_profile(c, id)?.unwrap_or_default();
                        Ok((
                            risk::profile(c, id)?,
                            vec![w.n[0], w.total[0], w.n[3], w.total[3]],
                        ))
                    };
                    let p = state(c, "wallet:cus_p:JPY")?;
                    assert_eq!(state(c, "wallet:cus_q:JPY")?, p, "{l}");
                    assert_eq!(state(c, "wallet:cus_r:JPY")?, p, "{l}");
                    assert_eq!(
                        (p.0.payments, p.0.payments_total, p.0.totals(3, 4), p.1),
                        (1, 700, (700, 700), vec![1, 700, 1, 700]),
                        "{l}"
                    );
                    assert_eq!(
                        ledger::balance(c, "wallet:cus_r:JPY")?,
                        (0, 0),
                        "{l}: opened empty"
                    );
                    // A profile is never written with the debit of another wallet (SQLite's
                    // hot path; PostgreSQL's writes it in the debit's own statement).
                    if c.backend() == konbini_store::Backend::Sqlite {
                        let entry = Entry::transfer(
                            "wallet:cus_q:JPY",
                            "settlement:store:st_1:JPY",
                            konbini_core::Amount::new(100, Currency::JPY).expect("amount"),
                        )
                        .expect("entry");
                        let place = count("wallet:cus_p:JPY", "dev_p", now, None).place;
                        let counted =
                            risk::counted_profile(100, &place, &empty, Windows::default());
                        let device = risk::DeviceCount {
                            device_id: "dev_p",
                            windows: Windows::default(),
                            amount: 100,
                            now_ms: now,
                        };
                        let refused = ledger::spend_code_and_post(
                            c,
                            51,
                            1,
                            "ent_x",
                            "payment",
                            "pay_x",
                            &entry,
                            now,
                            Some(&device),
                            Some(&ledger::ProfileOnDebit {
                                wallet: "wallet:cus_p:JPY",
                                row: None,
                                profile: &counted,
                            }),
                        );
                        assert!(refused.is_err(), "{l}");
                        // Straight to the wallet's row: only the row of that wallet is
                        // debited (its id is checked too), and it gets the profile.
                        let row = |c: &mut dyn Conn, id: &str| -> R<i64> {
                            c.query_one("SELECT rowid FROM accounts WHERE id = $1", params![id])?
                                .int(0)
                        };
                        let q_entry = Entry::transfer(
                            "wallet:cus_q:JPY",
                            "settlement:store:st_1:JPY",
                            konbini_core::Amount::new(100, Currency::JPY).expect("amount"),
                        )
                        .expect("entry");
                        let pay = |c: &mut dyn Conn, entry_id: &str, counter: i64, row: i64| {
                            ledger::spend_code_and_post(
                                c,
                                52,
                                counter,
                                entry_id,
                                "payment",
                                entry_id,
                                &q_entry,
                                now,
                                Some(&risk::DeviceCount {
                                    device_id: "dev_q",
                                    windows: Windows::default(),
                                    amount: 100,
                                    now_ms: now,
                                }),
                                Some(&ledger::ProfileOnDebit {
                                    wallet: "wallet:cus_q:JPY",
                                    row: Some(row),
                                    profile: &counted,
                                }),
                            )
                        };
                        let other_row = row(c, "wallet:cus_p:JPY")?;
                        let (p_before, q_before) = (
                            ledger::balance(c, "wallet:cus_p:JPY")?,
                            ledger::balance(c, "wallet:cus_q:JPY")?.0,
                        );
                        assert_eq!(
                            pay(c, "ent_wrong_row", 1, other_row)?,
                            ledger::CodeAndPost::InsufficientFunds,
                            "{l}: another wallet's row is not debited"
                        );
                        assert_eq!(ledger::balance(c, "wallet:cus_p:JPY")?, p_before, "{l}");
                        assert_eq!(ledger::balance(c, "wallet:cus_q:JPY")?.0, q_before, "{l}");
                        let q_row = row(c, "wallet:cus_q:JPY")?;
                        assert_eq!(
                            pay(c, "ent_right_row", 2, q_row)?,
                            ledger::CodeAndPost::Posted,
                            "{l}"
                        );
                        assert_eq!(
                            ledger::balance(c, "wallet:cus_q:JPY")?.0,
                            q_before - 100,
                            "{l}"
                        );
                        assert_eq!(
                            risk::profile(c, "wallet:cus_q:JPY")?.payments,
                            counted.payments,
                            "{l}"
                        );
                    }
                    Ok(())
                })
                .await;
            r.unwrap_or_else(|e| panic!("{l}: {e}"));
        })
    });
}
