//! The rule set Konbini ships: what a fresh installation decides before any analyst has
//! written a rule.
//!
//! Amounts are yen (minor units of JPY: ¥1 = 1). Every rule guards on `event.kind`, so a rule
//! written for payments never fires on a top-up that happens to carry similar features.
//! Windowed counters (`topups.count(1h)`, `payments.sum(24h)`) count the customer's *earlier*
//! events, so "a sixth top-up within an hour" is `topups.count(1h) >= 5`, and a daily total
//! including the event being decided is `topups.sum(24h) + topup.amount`.
//!
//! # Priorities
//!
//! Priorities only matter against an `allow` rule (which suppresses fired rules of lower
//! priority) and to name the deciding rule among equals; see [`RuleSet`](super::RuleSet).
//! The defaults use five levels, leaving room between them for an analyst's whitelist:
//!
//! | priority | what |
//! |---:|---|
//! | 1000 | the recovery hold |
//! | 900 | impossible travel |
//! | 800 | hard stops: resale baskets, top-up bursts, account farms |
//! | 600 | step-ups: confirmations and second factors |
//! | 300 | reviews: open a case, let the event through |
//!
//! An `allow` rule at 700 relaxes step-ups and reviews but never a hard stop or the hold.
//!
//! # Ordinary life
//!
//! The thresholds are chosen so that a customer buying ¥500–¥1,500 lunches every day in nearby
//! stores and topping up ¥10,000 a week from an old phone never meets one of them (a test
//! simulates a month of it). Each rule's description says what it is for and why its numbers
//! are what they are.

use super::catalogue::Window;
use super::rules::{Mode, RuleSpec};

/// One shipped rule, as plain data.
struct Shipped {
    name: &'static str,
    priority: i32,
    source: &'static str,
    description: &'static str,
}

const RULES: &[Shipped] = &[
    // --- The recovery hold (after a password reset; 72 hours by default). -----------------
    Shipped {
        name: "recovery_hold.payment",
        priority: 1000,
        source: r#"step_up when event.kind == "payment" and customer.recovery_hold and payment.amount > 3_000"#,
        description: "During the hold after an account recovery, a payment above ¥3,000 waits for the customer's confirmation in the wallet. The server also declines such payments outright from a device bound without a strong factor; this rule makes the hold visible in the journal.",
    },
    Shipped {
        name: "recovery_hold.money_in",
        priority: 1000,
        source: r#"review when event.kind in ["topup", "card_link"] and customer.recovery_hold"#,
        description: "A top-up or a new card during the recovery hold opens a case. The server already refuses both unless the device was bound with a strong factor (authenticator app, passkey, recovery code); what gets through is worth an analyst's look.",
    },
    Shipped {
        name: "recovery_hold.contact_change",
        priority: 1000,
        source: r#"step_up when event.kind == "contact_change" and customer.recovery_hold"#,
        description: "Changing the email address or phone number during the recovery hold needs a second factor (the server insists on a strong one).",
    },
    // --- Impossible travel. ----------------------------------------------------------------
    Shipped {
        name: "impossible_travel",
        priority: 900,
        source: r#"block when event.kind == "payment" and travel.km > 50 and travel.km_per_hour > 900"#,
        description: "The customer's previous payment was at a store more than 50 km away, too recently to have travelled here even by air (over 900 km/h): two people are paying with the account.",
    },
    // --- High-risk baskets: a step-up for large, a block for resale quantities. ------------
    Shipped {
        name: "basket.tobacco.block",
        priority: 800,
        source: r#"block when event.kind == "payment" and (basket.quantity("tobacco") + basket.quantity("e_cigarette") >= 50 or basket.amount("tobacco") + basket.amount("e_cigarette") > 100_000)"#,
        description: "Tobacco and e-cigarettes in resale quantities: 50 items or more, or more than ¥100,000, in one basket. The 7pay run was about 150 cartons of e-cigarette products for ¥730,000.",
    },
    Shipped {
        name: "basket.tobacco.step_up",
        priority: 600,
        source: r#"step_up when event.kind == "payment" and (basket.quantity("tobacco") + basket.quantity("e_cigarette") >= 20 or basket.amount("tobacco") + basket.amount("e_cigarette") > 30_000)"#,
        description: "20 or more items of tobacco and e-cigarettes (two cartons' worth of packs), or more than ¥30,000 of them: the customer confirms the payment in the wallet.",
    },
    Shipped {
        name: "basket.gift_cards.block",
        priority: 800,
        source: r#"block when event.kind == "payment" and (basket.quantity("gift_card") + basket.quantity("prepaid_card") >= 20 or basket.amount("gift_card") + basket.amount("prepaid_card") > 100_000)"#,
        description: "Gift and prepaid cards are how stolen balances become cash: 20 cards or more, or more than ¥100,000 of them, in one basket.",
    },
    Shipped {
        name: "basket.gift_cards.step_up",
        priority: 600,
        source: r#"step_up when event.kind == "payment" and (basket.quantity("gift_card") + basket.quantity("prepaid_card") >= 5 or basket.amount("gift_card") + basket.amount("prepaid_card") > 20_000)"#,
        description: "5 or more gift or prepaid cards, or more than ¥20,000 of them: the customer confirms the payment in the wallet.",
    },
    Shipped {
        name: "basket.alcohol.block",
        priority: 800,
        source: r#"block when event.kind == "payment" and (basket.quantity("alcohol") >= 120 or basket.amount("alcohol") > 150_000)"#,
        description: "Alcohol in resale quantities: 120 items (five cases of 24) or more, or more than ¥150,000, in one basket.",
    },
    Shipped {
        name: "basket.alcohol.step_up",
        priority: 600,
        source: r#"step_up when event.kind == "payment" and (basket.quantity("alcohol") >= 48 or basket.amount("alcohol") > 50_000)"#,
        description: "48 or more items of alcohol (two cases of 24), or more than ¥50,000 of it: the customer confirms the payment in the wallet.",
    },
    // --- Top-up velocity: count and amount per window. --------------------------------------
    Shipped {
        name: "topups.count.block",
        priority: 800,
        source: r#"block when event.kind == "topup" and topups.count(1h) >= 5"#,
        description: "A sixth top-up within an hour is refused: the 7pay attackers topped one account up six times in 40 minutes.",
    },
    Shipped {
        name: "topups.count.step_up",
        priority: 600,
        source: r#"step_up when event.kind == "topup" and topups.count(10m) >= 2"#,
        description: "A third top-up within ten minutes needs a second factor.",
    },
    Shipped {
        name: "topups.count.review",
        priority: 300,
        source: r#"review when event.kind == "topup" and (topups.count(1h) >= 3 or topups.count(24h) >= 5)"#,
        description: "A fourth top-up within an hour, or a sixth within a day, opens a case.",
    },
    Shipped {
        name: "topups.amount.step_up",
        priority: 600,
        source: r#"step_up when event.kind == "topup" and topups.sum(1h) + topup.amount > 50_000"#,
        description: "More than ¥50,000 topped up within an hour, this top-up included, needs a second factor.",
    },
    Shipped {
        name: "topups.amount.review",
        priority: 300,
        source: r#"review when event.kind == "topup" and topups.sum(24h) + topup.amount > 100_000"#,
        description: "More than ¥100,000 topped up within a day, this top-up included, opens a case.",
    },
    // --- The first week. ---------------------------------------------------------------------
    Shipped {
        name: "first_week.payments",
        priority: 600,
        source: r#"step_up when event.kind == "payment" and account.age < 7d and payments.sum(24h) + payment.amount > 30_000"#,
        description: "In an account's first week, paying more than ¥30,000 within a day, this payment included, needs the customer's confirmation in the wallet.",
    },
    Shipped {
        name: "first_week.topups",
        priority: 600,
        source: r#"step_up when event.kind == "topup" and account.age < 7d and topups.sum(24h) + topup.amount > 20_000"#,
        description: "In an account's first week, topping up more than ¥20,000 within a day, this top-up included, needs a second factor.",
    },
    // --- The new-device cool-down. -----------------------------------------------------------
    Shipped {
        name: "new_device.payment",
        priority: 600,
        source: r#"step_up when event.kind == "payment" and device.age < 24h and account.age > device.age + 1h and payment.amount > 10_000"#,
        description: "For 24 hours after a device is bound to an existing account (more than an hour after sign-up, so not the sign-up phone), payments above ¥10,000 need the customer's confirmation in the wallet.",
    },
    Shipped {
        name: "new_device.money_in",
        priority: 300,
        source: r#"review when event.kind in ["topup", "card_link"] and device.age < 24h and account.age > device.age + 1h"#,
        description: "A top-up or card link from a device bound to an existing account within the last 24 hours opens a case: the 7pay takeovers bound a phone, then loaded money.",
    },
    // --- Amounts far above the customer's own history. -------------------------------------
    Shipped {
        name: "unusual_amount",
        priority: 600,
        source: r#"step_up when event.kind == "payment" and payment.amount > 20_000 and payment.amount > 10 * customer.avg_payment"#,
        description: "A payment above ¥20,000 and more than ten times the customer's average payment needs the customer's confirmation in the wallet. Before a first payment there is no average and the rule does not fire (the first-week rules apply).",
    },
    // --- Many accounts on one device or one card. -------------------------------------------
    Shipped {
        name: "shared_device.block",
        priority: 800,
        source: r#"block when event.kind == "device_binding" and device.accounts >= 5"#,
        description: "A fifth account is not bound to one device: that is an account farm, not a family.",
    },
    Shipped {
        name: "shared_device.review",
        priority: 300,
        source: r#"review when device.accounts >= 3 and event.kind in ["device_binding", "card_link", "topup", "payment"]"#,
        description: "Three or more accounts on one device (the acting account included) open a case when the device binds, links a card, tops up or pays.",
    },
    Shipped {
        name: "shared_card.block",
        priority: 800,
        source: r#"block when event.kind == "card_link" and card.accounts >= 5"#,
        description: "A card already linked to four accounts is not linked to a fifth.",
    },
    Shipped {
        name: "shared_card.review",
        priority: 300,
        source: r#"review when card.accounts >= 3 and event.kind in ["card_link", "topup"]"#,
        description: "A card linked to three or more accounts (the acting account included) opens a case when it is linked or used to top up.",
    },
];

/// The shipped default rule set: every rule live, version 1, in the order of the table in
/// `docs/risk.md`.
///
/// ```
/// use konbini_core::risk::{RuleSet, default_rules};
/// let set = RuleSet::from_specs(default_rules()).unwrap();
/// assert_eq!(set.rules().len(), default_rules().len());
/// ```
pub fn default_rules() -> Vec<RuleSpec> {
    RULES
        .iter()
        .map(|r| RuleSpec {
            name: r.name.to_string(),
            description: r.description.to_string(),
            source: r.source.to_string(),
            priority: r.priority,
            mode: Mode::Live,
            version: 1,
        })
        .collect()
}

/// The default rules as a Markdown table for `docs/risk.md` (a test keeps the two equal).
pub fn default_rules_markdown() -> String {
    let mut out =
        String::from("| rule | priority | source | what it is for |\n|---|---:|---|---|\n");
    for r in RULES {
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            r.name, r.priority, r.source, r.description
        ));
    }
    out.push_str(&format!(
        "\n{} rules, all live. Windows: {}.\n",
        RULES.len(),
        Window::NAMES.join(", ")
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::{Outcome, RuleSet};

    #[test]
    fn the_defaults_compile_and_guard_on_the_event_kind() {
        let set = RuleSet::from_specs(default_rules()).expect("the defaults compile");
        assert_eq!(set.rules().len(), RULES.len());
        for rule in set.rules() {
            assert!(
                rule.source().contains("event.kind"),
                "{} does not say which events it is for",
                rule.name()
            );
            assert_ne!(rule.outcome(), Outcome::Allow, "{}", rule.name());
            // Table cells: no pipes, no line breaks.
            for text in [rule.source(), rule.description()] {
                assert!(
                    !text.contains('|') && !text.contains('\n'),
                    "{}",
                    rule.name()
                );
            }
            assert!(!rule.description().is_empty());
        }
    }

    #[test]
    fn the_markdown_lists_every_rule() {
        let md = default_rules_markdown();
        for r in RULES {
            assert!(md.contains(&format!("| `{}` | {} |", r.name, r.priority)));
        }
    }
}
