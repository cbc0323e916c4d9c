//! Property test: under any sequence of top-ups, payments, refunds and holds, the ledger on the
//! real database stays balanced, no wallet goes negative, and every balance equals a simple
//! model's. Runs on SQLite and PostgreSQL.

use konbini_core::ledger::Entry;
use konbini_core::{Amount, Currency};
use konbini_store::ledger::{self, NewHold, Posted};
use konbini_store::testing::databases;
use konbini_store::{Db, StoreError};
use proptest::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone)]
enum Op {
    TopUp { c: usize, amount: i64 },
    Pay { c: usize, s: usize, amount: i64 },
    Refund { c: usize, s: usize, amount: i64 },
    Hold { c: usize, amount: i64 },
    EndHold { nth: usize, post: bool },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..3usize, 1..5_000i64).prop_map(|(c, amount)| Op::TopUp { c, amount }),
        (0..3usize, 0..2usize, 1..5_000i64).prop_map(|(c, s, amount)| Op::Pay { c, s, amount }),
        (0..3usize, 0..2usize, 1..2_000i64).prop_map(|(c, s, amount)| Op::Refund { c, s, amount }),
        (0..3usize, 1..5_000i64).prop_map(|(c, amount)| Op::Hold { c, amount }),
        (0..8usize, any::<bool>()).prop_map(|(nth, post)| Op::EndHold { nth, post }),
    ]
}

static CASE: AtomicU64 = AtomicU64::new(0);

/// (balance, held) of each account of a case.
type Balances = Vec<(i64, i64)>;

/// Applies `ops` to the database and to a model; returns (model balances, db balances).
fn run_case(db: &Db, ops: Vec<Op>) -> Result<(Balances, Balances), StoreError> {
    let case = CASE.fetch_add(1, Ordering::Relaxed);
    let jpy = Currency::JPY;
    let wallet = move |c: usize| format!("wallet:p{case}c{c}:JPY");
    let store = move |s: usize| format!("settlement:p{case}s{s}:JPY");
    let clearing = format!("clearing:card:p{case}:JPY");
    let accounts: Vec<String> = (0..3)
        .map(wallet)
        .chain((0..2).map(store))
        .chain([clearing.clone()])
        .collect();
    db.write_blocking(move |conn| {
        // model: (balance, held) per account, in the order of `accounts`
        let mut model = vec![(0i64, 0i64); 6];
        let idx = |a: &str, accounts: &[String]| accounts.iter().position(|x| x == a).unwrap_or(0);
        let mut holds: Vec<(String, usize, i64, bool)> = Vec::new();
        for c in 0..3 {
            ledger::ensure_account(
                conn,
                &wallet(c),
                konbini_core::ledger::AccountKind::Wallet,
                jpy,
                1,
            )?;
        }
        for (n, op) in ops.iter().enumerate() {
            let eid = format!("e{case}-{n}");
            let amt = |x: i64| Amount::new(x, jpy).map_err(|e| StoreError::Decode(e.to_string()));
            let xfer = |from: &str, to: &str, x: i64| {
                Entry::transfer(from, to, amt(x)?).map_err(|e| StoreError::Decode(e.to_string()))
            };
            match op {
                Op::TopUp { c, amount } => {
                    let r = ledger::post(
                        conn,
                        &eid,
                        "topup",
                        &eid,
                        &xfer(&clearing, &wallet(*c), *amount)?,
                        1,
                    )?;
                    assert_eq!(r, Posted::Ok);
                    model[idx(&clearing, &accounts)].0 -= amount;
                    model[*c].0 += amount;
                }
                Op::Pay { c, s, amount } => {
                    let r = ledger::post(
                        conn,
                        &eid,
                        "payment",
                        &eid,
                        &xfer(&wallet(*c), &store(*s), *amount)?,
                        1,
                    )?;
                    let available = model[*c].0 - model[*c].1;
                    if available >= *amount {
                        assert_eq!(r, Posted::Ok, "available {available} >= {amount}");
                        model[*c].0 -= amount;
                        model[3 + s].0 += amount;
                    } else {
                        assert_eq!(
                            r,
                            Posted::InsufficientFunds,
                            "available {available} < {amount}"
                        );
                    }
                }
                Op::Refund { c, s, amount } => {
                    let r = ledger::post(
                        conn,
                        &eid,
                        "refund",
                        &eid,
                        &xfer(&store(*s), &wallet(*c), *amount)?,
                        1,
                    )?;
                    assert_eq!(r, Posted::Ok);
                    model[3 + s].0 -= amount;
                    model[*c].0 += amount;
                }
                Op::Hold { c, amount } => {
                    let hid = format!("h{case}-{n}");
                    let ok = ledger::hold(
                        conn,
                        &NewHold {
                            id: &hid,
                            account_id: &wallet(*c),
                            amount_minor: *amount,
                            currency: jpy,
                            ref_id: &eid,
                            expires_ms: 10,
                        },
                        1,
                    )?;
                    assert_eq!(ok, model[*c].0 - model[*c].1 >= *amount);
                    if ok {
                        model[*c].1 += amount;
                        holds.push((hid, *c, *amount, true));
                    }
                }
                Op::EndHold { nth, post } => {
                    let pending: Vec<usize> = (0..holds.len()).filter(|i| holds[*i].3).collect();
                    if pending.is_empty() {
                        continue;
                    }
                    let i = pending[nth % pending.len()];
                    let (hid, c, amount, _) = holds[i].clone();
                    assert!(ledger::release_hold(
                        conn,
                        &hid,
                        if *post { "posted" } else { "voided" }
                    )?);
                    holds[i].3 = false;
                    model[c].1 -= amount;
                    if *post {
                        let r = ledger::post(
                            conn,
                            &eid,
                            "payment",
                            &eid,
                            &xfer(&wallet(c), &store(0), amount)?,
                            1,
                        )?;
                        assert_eq!(r, Posted::Ok, "a released hold guarantees its funds");
                        model[c].0 -= amount;
                        model[3].0 += amount;
                    }
                }
            }
        }
        let mut actual = Vec::new();
        for a in &accounts {
            actual.push(ledger::balance(conn, a)?);
        }
        Ok((model, actual))
    })
}

#[test]
fn ledger_invariants_hold_under_any_sequence() {
    for t in databases() {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 24,
            ..ProptestConfig::default()
        });
        let db = t.db.clone();
        let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
            let (model, actual) =
                run_case(&db, ops).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&model, &actual);
            prop_assert_eq!(
                model.iter().map(|m| m.0).sum::<i64>(),
                0,
                "money is neither created nor destroyed"
            );
            for (b, h) in &model[..3] {
                prop_assert!(*b - *h >= 0, "a wallet went negative");
            }
            let report = db
                .read_blocking(ledger::verify)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert!(report.ok(), "{:?}", report.problems);
            Ok(())
        });
        if let Err(e) = result {
            panic!("{}: {e}", t.label);
        }
    }
}
