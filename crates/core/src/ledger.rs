//! Double-entry rules: account naming, which accounts may go negative, and balanced entries.
//!
//! A posting's amount is signed: positive credits the account (its balance grows), negative
//! debits it. Every entry's postings sum to zero in its one currency; entries are never
//! edited, only reversed by a new entry.

use crate::money::{Amount, Currency, MAX_AMOUNT_MINOR};

/// Number of card-clearing shards. Top-ups spread over them so that no single clearing row
/// serializes every top-up on the platform.
pub const CLEARING_SHARDS: u32 = 64;

/// The kinds of ledger account. The kind decides whether the balance may go below zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// A customer's wallet: money the customer holds. Never negative.
    Wallet,
    /// A store's settlement account: what the chain owes the store for wallet payments. It may
    /// go below zero when refunds follow a payout.
    StoreSettlement,
    /// A store's cash drawer for cash top-ups taken at the till.
    StoreCash,
    /// Money in flight with the card processor (captured but not yet settled). Negative while
    /// the processor owes us.
    CardClearing,
    /// Compensation paid to customers for unauthorized transactions.
    CompensationExpense,
    /// Anything that cannot be placed yet.
    Suspense,
}

impl AccountKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            AccountKind::Wallet => "wallet",
            AccountKind::StoreSettlement => "store_settlement",
            AccountKind::StoreCash => "store_cash",
            AccountKind::CardClearing => "card_clearing",
            AccountKind::CompensationExpense => "compensation_expense",
            AccountKind::Suspense => "suspense",
        }
    }
    pub fn parse(s: &str) -> Option<AccountKind> {
        Some(match s {
            "wallet" => AccountKind::Wallet,
            "store_settlement" => AccountKind::StoreSettlement,
            "store_cash" => AccountKind::StoreCash,
            "card_clearing" => AccountKind::CardClearing,
            "compensation_expense" => AccountKind::CompensationExpense,
            "suspense" => AccountKind::Suspense,
            _ => return None,
        })
    }
    /// The kind of an account, read from its id's prefix (see the `*_account` functions).
    ///
    /// ```
    /// use konbini_core::ledger::{AccountKind, wallet_account};
    /// use konbini_core::Currency;
    /// assert_eq!(AccountKind::of_account(&wallet_account("cus_1", Currency::JPY)), Some(AccountKind::Wallet));
    /// ```
    pub fn of_account(account_id: &str) -> Option<AccountKind> {
        let prefix = account_id.split(':').next()?;
        Some(match prefix {
            "wallet" => AccountKind::Wallet,
            "settlement" => AccountKind::StoreSettlement,
            "cash" => AccountKind::StoreCash,
            "clearing" => AccountKind::CardClearing,
            "expense" => AccountKind::CompensationExpense,
            "suspense" => AccountKind::Suspense,
            _ => return None,
        })
    }

    /// Whether the balance may be below zero (TigerBeetle's `debits_must_not_exceed_credits`
    /// is set for every kind that returns false).
    pub fn may_go_negative(&self) -> bool {
        !matches!(self, AccountKind::Wallet)
    }
}

/// Ledger account id of a customer's wallet in one currency.
pub fn wallet_account(customer_id: &str, currency: Currency) -> String {
    format!("wallet:{customer_id}:{currency}")
}
/// The currency of a wallet account id made by [`wallet_account`]; `None` for another kind
/// of account or an unknown currency.
///
/// ```
/// use konbini_core::ledger::{wallet_account, wallet_currency};
/// use konbini_core::Currency;
/// assert_eq!(wallet_currency(&wallet_account("cus_1", Currency::JPY)), Some(Currency::JPY));
/// assert_eq!(wallet_currency("settlement:store:st_1:JPY"), None);
/// ```
pub fn wallet_currency(account_id: &str) -> Option<Currency> {
    if !is_wallet_account(account_id) {
        return None;
    }
    Currency::parse(account_id.rsplit_once(':')?.1).ok()
}
/// Whether a ledger account id names a customer wallet (the accounts that may not go negative).
pub fn is_wallet_account(account_id: &str) -> bool {
    account_id.starts_with("wallet:")
}

/// Ledger account id of a store's settlement account.
pub fn store_settlement_account(store_id: &str, currency: Currency) -> String {
    format!("settlement:{store_id}:{currency}")
}
/// Ledger account id of a store's cash drawer.
pub fn store_cash_account(store_id: &str, currency: Currency) -> String {
    format!("cash:{store_id}:{currency}")
}
/// Ledger account id of the card-clearing shard used for `key` (a customer id): a stable
/// FNV-1a hash spreads customers over [`CLEARING_SHARDS`] rows.
pub fn card_clearing_account(key: &str, currency: Currency) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("clearing:card:{:02}:{currency}", h % CLEARING_SHARDS)
}

/// One line of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posting {
    pub account_id: String,
    /// Signed minor units: positive credits the account, negative debits it.
    pub amount_minor: i64,
}

/// Why an entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("an entry needs at least two postings")]
    TooFewPostings,
    #[error("a posting amount must be non-zero and within limits")]
    BadPosting,
    #[error("postings do not sum to zero")]
    Unbalanced,
    #[error("an account appears twice in one entry")]
    DuplicateAccount,
}

/// A balanced set of postings in one currency, ready to be written. Only constructible
/// through [`Entry::new`] or [`Entry::transfer`], so an unbalanced entry cannot reach the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    currency: Currency,
    postings: Vec<Posting>,
}

impl Entry {
    /// Validates and builds an entry. Postings are sorted by account id so that every writer
    /// touches account rows in the same order (no deadlocks between concurrent entries).
    pub fn new(currency: Currency, mut postings: Vec<Posting>) -> Result<Entry, LedgerError> {
        if postings.len() < 2 {
            return Err(LedgerError::TooFewPostings);
        }
        let mut sum: i64 = 0;
        for p in &postings {
            if p.amount_minor == 0 || p.amount_minor.unsigned_abs() > MAX_AMOUNT_MINOR as u64 {
                return Err(LedgerError::BadPosting);
            }
            sum = sum
                .checked_add(p.amount_minor)
                .ok_or(LedgerError::BadPosting)?;
        }
        if sum != 0 {
            return Err(LedgerError::Unbalanced);
        }
        postings.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        if postings
            .windows(2)
            .any(|w| w[0].account_id == w[1].account_id)
        {
            return Err(LedgerError::DuplicateAccount);
        }
        Ok(Entry { currency, postings })
    }

    /// Moves `amount` from `from` (debited) to `to` (credited).
    pub fn transfer(from: &str, to: &str, amount: Amount) -> Result<Entry, LedgerError> {
        Entry::new(
            amount.currency(),
            vec![
                Posting {
                    account_id: from.to_string(),
                    amount_minor: -amount.minor(),
                },
                Posting {
                    account_id: to.to_string(),
                    amount_minor: amount.minor(),
                },
            ],
        )
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }
    pub fn postings(&self) -> &[Posting] {
        &self.postings
    }
    /// The entry that undoes this one.
    pub fn reversal(&self) -> Entry {
        Entry {
            currency: self.currency,
            postings: self
                .postings
                .iter()
                .map(|p| Posting {
                    account_id: p.account_id.clone(),
                    amount_minor: -p.amount_minor,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(a: &str, x: i64) -> Posting {
        Posting {
            account_id: a.into(),
            amount_minor: x,
        }
    }

    #[test]
    fn rejects_bad_entries() {
        let c = Currency::JPY;
        assert_eq!(
            Entry::new(c, vec![p("a", 5)]),
            Err(LedgerError::TooFewPostings)
        );
        assert_eq!(
            Entry::new(c, vec![p("a", 5), p("b", -4)]),
            Err(LedgerError::Unbalanced)
        );
        assert_eq!(
            Entry::new(c, vec![p("a", 0), p("b", 0)]),
            Err(LedgerError::BadPosting)
        );
        assert_eq!(
            Entry::new(c, vec![p("a", 5), p("a", -5)]),
            Err(LedgerError::DuplicateAccount)
        );
        assert_eq!(
            Entry::new(c, vec![p("a", i64::MAX), p("b", i64::MIN + 1)]),
            Err(LedgerError::BadPosting)
        );
        assert!(Entry::new(c, vec![p("a", 5), p("b", -3), p("c", -2)]).is_ok());
    }

    #[test]
    fn clearing_shards_spread() {
        let shards: std::collections::HashSet<String> = (0..1000)
            .map(|i| card_clearing_account(&format!("cus_{i}"), Currency::JPY))
            .collect();
        assert!(shards.len() > 50, "only {} shards used", shards.len());
    }

    proptest! {
        #[test]
        fn built_entries_always_balance(amounts in proptest::collection::vec(1i64..1_000_000, 1..8)) {
            // Credit n accounts and debit their total from one: always balanced.
            let total: i64 = amounts.iter().sum();
            let mut ps: Vec<Posting> = amounts.iter().enumerate().map(|(i, a)| p(&format!("acc{i}"), *a)).collect();
            ps.push(p("source", -total));
            let e = Entry::new(Currency::JPY, ps).unwrap();
            prop_assert_eq!(e.postings().iter().map(|x| x.amount_minor).sum::<i64>(), 0);
            let r = e.reversal();
            for (a, b) in e.postings().iter().zip(r.postings()) {
                prop_assert_eq!(a.amount_minor, -b.amount_minor);
            }
        }

        #[test]
        fn off_by_any_amount_is_refused(amounts in proptest::collection::vec(1i64..1_000_000, 1..8), off in -1000i64..1000) {
            prop_assume!(off != 0);
            let total: i64 = amounts.iter().sum();
            let mut ps: Vec<Posting> = amounts.iter().enumerate().map(|(i, a)| p(&format!("acc{i}"), *a)).collect();
            ps.push(p("source", -total + off));
            prop_assume!(-total + off != 0);
            prop_assert_eq!(Entry::new(Currency::JPY, ps), Err(LedgerError::Unbalanced));
        }
    }
}
