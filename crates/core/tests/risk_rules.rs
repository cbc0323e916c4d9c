//! The risk-rule language through its public API: the examples analysts write, every class of
//! error with its exact message and position, rule-set precedence and shadow mode, and
//! property tests that no input panics the lexer, parser, checker or evaluator, that printed
//! trees parse back to themselves, that the compiled evaluator agrees with a direct reading
//! of the tree, and that the journal form of features round-trips and decides the same.

use std::collections::HashMap;

use konbini_core::risk::*;
use proptest::prelude::*;

const H: i64 = 3_600_000;
const D: i64 = 24 * H;

fn program(src: &str) -> Program {
    let rule = parse_rule(src).unwrap_or_else(|e| panic!("{src}: {e}"));
    compile(&rule.condition).unwrap_or_else(|e| panic!("{src}: {e}"))
}

/// The error for `src`, whether the parser or the checker found it.
fn error(src: &str) -> RuleError {
    match parse_rule(src) {
        Err(e) => e,
        Ok(r) => match compile(&r.condition) {
            Err(e) => e,
            Ok(_) => panic!("{src} was accepted"),
        },
    }
}

fn spec(name: &str, source: &str, priority: i32, mode: Mode) -> RuleSpec {
    RuleSpec {
        name: name.to_string(),
        description: String::new(),
        source: source.to_string(),
        priority,
        mode,
        version: 1,
    }
}

// ---------------------------------------------------------------------------------------------
// The examples from the issue.

#[test]
fn the_issue_examples_parse_check_and_evaluate() {
    let step_up = program("step_up when payment.amount > 10000 and device.age < 24h");
    let mut f = Features::new();
    f.set_money(MoneyFeature::PaymentAmount, 10_001)
        .set_duration(DurationFeature::DeviceAge, 23 * H);
    assert_eq!(step_up.eval(&f).truth, Truth::True);
    f.set_duration(DurationFeature::DeviceAge, 24 * H);
    assert_eq!(step_up.eval(&f).truth, Truth::False);

    let basket = program(
        "block when basket.quantity(\"tobacco\") + basket.quantity(\"e_cigarette\") >= 20 and account.age < 30d",
    );
    let mut f = Features::new();
    f.set_duration(DurationFeature::AccountAge, 3 * D)
        .add_basket_line(Category::Tobacco, 5, 3_000)
        .add_basket_line(Category::ECigarette, 14, 700_000);
    assert_eq!(basket.eval(&f).truth, Truth::False, "19 items");
    f.add_basket_line(Category::ECigarette, 1, 5_000);
    assert_eq!(basket.eval(&f).truth, Truth::True, "20 items");
    f.set_duration(DurationFeature::AccountAge, 30 * D);
    assert_eq!(basket.eval(&f).truth, Truth::False, "an old account");

    let review = program("review when topups.count(1h) >= 4 or card.accounts >= 3");
    let mut f = Features::new();
    f.set_window(WindowCounter::TopupsCount, Window::Hour1, 1);
    assert_eq!(
        review.eval(&f).truth,
        Truth::Unknown,
        "card.accounts unknown"
    );
    f.set_count(CountFeature::CardAccounts, 3);
    assert_eq!(review.eval(&f).truth, Truth::True);
    f.set_count(CountFeature::CardAccounts, 1).set_window(
        WindowCounter::TopupsCount,
        Window::Hour1,
        4,
    );
    assert_eq!(review.eval(&f).truth, Truth::True);

    let travel = program("block when travel.km_per_hour > 900");
    let mut f = Features::new();
    assert_eq!(travel.eval(&f).truth, Truth::Unknown, "no previous store");
    f.set_int(IntFeature::TravelKmPerHour, 1_200);
    assert_eq!(travel.eval(&f).truth, Truth::True);

    let allow = program("allow when customer.tier == \"established\" and payment.amount <= 3000");
    let mut f = Features::new();
    f.set_tier(Tier::Established)
        .set_money(MoneyFeature::PaymentAmount, 3_000);
    assert_eq!(allow.eval(&f).truth, Truth::True);
    f.set_tier(Tier::New);
    assert_eq!(allow.eval(&f).truth, Truth::False);
}

#[test]
fn rules_span_lines_and_carry_comments() {
    let src = "block when # the 7pay pattern\n    basket.quantity(\"e_cigarette\") >= 20\n    and account.age < 30d";
    let rule = parse_rule(src).unwrap();
    assert_eq!(
        rule.to_string(),
        "block when basket.quantity(\"e_cigarette\") >= 20 and account.age < 30d"
    );
    assert_eq!(
        error("block when\n  payment.amount >\n  \"x\"").to_string(),
        "cannot compare money (`payment.amount`) with a string (`\"x\"`) at 3:3"
    );
}

// ---------------------------------------------------------------------------------------------
// Errors: every class, with its message and position.

#[test]
fn syntax_errors_have_positions() {
    let cases = [
        (
            "block when payment.amount > 10000 and",
            "expected an expression after `and` at 1:38 (found the end of the rule)",
        ),
        (
            "block when (payment.amount > 10000 or ) and true",
            "expected an expression after `or` at 1:39 (found `)`)",
        ),
        (
            "block when payment.amount = 10",
            "`=` is not an operator: write `==` to compare at 1:27",
        ),
        (
            "block when payment.amount > 10 && true",
            "write `and` instead of `&` at 1:32",
        ),
        (
            "step_up when\n  device.age < 24h and\n  payment.amount > 1O000",
            "`1O000` is not a number or a duration: a duration is a number followed by s, m, h or d, such as `30s`, `10m`, `24h` or `7d` at 3:20",
        ),
        (
            "block when basket.quantity(\"tobacco) > 1",
            "string is not closed with `\"` at 1:28",
        ),
        (
            "block when 0 < account.age < 30d",
            "comparisons do not chain: join two comparisons with `and` (`a < b and b < c`) at 1:28",
        ),
        (
            "deny when true",
            "unknown outcome `deny`: a rule starts with allow, step_up, review or block at 1:1",
        ),
        (
            "stepup when true",
            "unknown outcome `stepup`: a rule starts with allow, step_up, review or block at 1:1 (did you mean `step_up`?)",
        ),
        (
            "block if true",
            "expected `when` after the outcome `block`, found `if` at 1:7",
        ),
        (
            "block when 1_000_",
            "a number may not end with an underscore at 1:12",
        ),
    ];
    for (src, want) in cases {
        let e = error(src);
        assert_eq!(e.kind, ErrorKind::Syntax, "{src}");
        assert_eq!(e.to_string(), want, "{src}");
    }
}

#[test]
fn unknown_features_suggest_the_closest_name() {
    let e = error("block when payment.amont > 10000");
    assert_eq!(e.kind, ErrorKind::UnknownFeature);
    assert_eq!(
        e.to_string(),
        "unknown feature `payment.amont` at 1:12 (did you mean `payment.amount`?)"
    );
    assert_eq!(e.pos, Pos { line: 1, col: 12 });
    assert_eq!(e.help.as_deref(), Some("did you mean `payment.amount`?"));
    assert_eq!(
        error("block when topup.count(1h) > 3").to_string(),
        "unknown feature `topup.count` at 1:12 (did you mean `topups.count`?)"
    );
    assert_eq!(
        error("block when weather.rain").to_string(),
        "unknown feature `weather.rain` at 1:12"
    );
}

#[test]
fn every_checker_error_class() {
    use ErrorKind::*;
    let cases: &[(&str, ErrorKind, &str)] = &[
        // Arguments.
        (
            "block when topups.count(\"x\") > 1",
            BadArgument,
            "`topups.count` takes a window, such as `topups.count(1h)`, not the string \"x\" at 1:25 (windows are 10m, 1h, 24h, 7d)",
        ),
        (
            "block when topups.count(1) > 1",
            BadArgument,
            "`topups.count` takes a window, such as `topups.count(1h)`, not the plain number `1` at 1:25 (windows are 10m, 1h, 24h, 7d)",
        ),
        (
            "block when topups.count > 1",
            BadArgument,
            "`topups.count` needs a window, such as `topups.count(1h)` at 1:12 (windows are 10m, 1h, 24h, 7d)",
        ),
        (
            "block when payment.amount(1h) > 1",
            BadArgument,
            "`payment.amount` takes no argument at 1:27",
        ),
        (
            "block when basket.quantity(24h) > 1",
            BadArgument,
            "`basket.quantity` takes a category in quotes, such as `basket.quantity(\"tobacco\")`, not the duration `24h` at 1:28",
        ),
        (
            "block when basket.amount > 1",
            BadArgument,
            "`basket.amount` needs a category, such as `basket.amount(\"tobacco\")` at 1:12",
        ),
        // Windows and categories.
        (
            "block when topups.count(2h) > 1",
            BadWindow,
            "`2h` is not a maintained window at 1:25 (windows are 10m, 1h, 24h, 7d)",
        ),
        (
            "block when payments.sum(30d) > 1",
            BadWindow,
            "`30d` is not a maintained window at 1:25 (windows are 10m, 1h, 24h, 7d)",
        ),
        (
            "block when basket.quantity(\"tobaco\") > 1",
            UnknownCategory,
            "unknown category \"tobaco\" at 1:28 (did you mean \"tobacco\"?)",
        ),
        (
            "block when basket.amount(\"jewellery\") > 1",
            UnknownCategory,
            "unknown category \"jewellery\" at 1:26 (categories are tobacco, e_cigarette, alcohol, gift_card, prepaid_card, food, drink, medicine, daily_goods, ticket, other)",
        ),
        // Values of string features.
        (
            "block when customer.tier == \"gold\"",
            UnknownValue,
            "`customer.tier` is never \"gold\": it is one of \"new\", \"verified\", \"established\" at 1:29",
        ),
        (
            "block when \"verifed\" == customer.tier",
            UnknownValue,
            "`customer.tier` is never \"verifed\": it is one of \"new\", \"verified\", \"established\" at 1:12 (did you mean \"verified\"?)",
        ),
        (
            "block when event.kind in [\"payment\", \"refund\"]",
            UnknownValue,
            "`event.kind` is never \"refund\": it is one of \"login\", \"device_binding\", \"recovery\", \"contact_change\", \"card_link\", \"topup\", \"payment\" at 1:38",
        ),
        // Type mismatches in comparisons.
        (
            "block when payment.amount > \"x\"",
            TypeMismatch,
            "cannot compare money (`payment.amount`) with a string (`\"x\"`) at 1:29",
        ),
        (
            "block when device.age > 10",
            TypeMismatch,
            "`device.age` is a duration, but `10` is a plain number: write a unit, such as `10m`, `10h` or `10d` at 1:25",
        ),
        (
            "block when device.age > travel.km",
            TypeMismatch,
            "`device.age` is a duration, but `travel.km` is a plain number at 1:25",
        ),
        (
            "block when payment.amount > card.accounts",
            TypeMismatch,
            "cannot compare money (`payment.amount`) with a count (`card.accounts`) at 1:27",
        ),
        (
            "block when payment.amount > 1h",
            TypeMismatch,
            "cannot compare money (`payment.amount`) with a duration (`1h`) at 1:29",
        ),
        (
            "block when customer.recovery_hold > false",
            TypeMismatch,
            "`>` does not apply to booleans: use `==` or `!=` at 1:35",
        ),
        (
            "block when customer.tier < \"new\"",
            TypeMismatch,
            "`<` does not apply to strings: use `==`, `!=` or `in` at 1:26",
        ),
        (
            "block when event.kind == customer.tier",
            TypeMismatch,
            "`event.kind` and `customer.tier` never hold the same value: they are different kinds of string at 1:23",
        ),
        (
            "block when \"a\" == \"a\"",
            TypeMismatch,
            "compare a string feature with a string, such as `customer.tier == \"new\"`; two literals always compare the same way at 1:16",
        ),
        (
            "block when payment.amount in [\"a\"]",
            TypeMismatch,
            "`in` needs a string feature on its left, such as `customer.tier`, but `payment.amount` is money at 1:12",
        ),
        // Type mismatches in arithmetic and logic.
        (
            "block when customer.tier + 1 > 2",
            TypeMismatch,
            "`+` needs numbers, but `customer.tier` is a string at 1:12",
        ),
        (
            "block when payment.amount * payment.amount > 2",
            TypeMismatch,
            "cannot apply `*` to money (`payment.amount`) and money (`payment.amount`) at 1:27",
        ),
        (
            "block when device.age + 1 > 2h",
            TypeMismatch,
            "cannot apply `+` to a duration (`device.age`) and a plain number (`1`); write the plain number with a unit, such as `1h` at 1:23",
        ),
        (
            "block when payment.amount + device.age > 1",
            TypeMismatch,
            "cannot apply `+` to money (`payment.amount`) and a duration (`device.age`) at 1:27",
        ),
        (
            "block when -customer.recovery_hold",
            TypeMismatch,
            "`-` needs a number, but `customer.recovery_hold` is a boolean at 1:13",
        ),
        (
            "block when payment.amount > 1 and topups.count(1h)",
            TypeMismatch,
            "`and` needs a condition (true or false), but `topups.count(1h)` is a count at 1:35",
        ),
        (
            "block when not payment.amount",
            TypeMismatch,
            "`not` needs a condition (true or false), but `payment.amount` is money at 1:16",
        ),
        // The condition itself.
        (
            "block when payment.amount + 1",
            NotBoolean,
            "a rule's condition must be true or false, but `payment.amount + 1` is money at 1:12 (compare it with something, e.g. `payment.amount > 10000`)",
        ),
        (
            "block when customer.tier",
            NotBoolean,
            "a rule's condition must be true or false, but `customer.tier` is a string at 1:12 (compare it with something, e.g. `payment.amount > 10000`)",
        ),
    ];
    for (src, kind, want) in cases {
        let e = error(src);
        assert_eq!((e.kind, e.to_string().as_str()), (*kind, *want), "{src}");
    }
}

#[test]
fn size_and_depth_limits_are_checked() {
    // Depth from nesting operators, not parentheses: a long right-leaning chain.
    let mut deep = "true".to_string();
    for _ in 0..MAX_DEPTH {
        deep = format!("true and ({deep})");
    }
    let e = error(&format!("block when {deep}"));
    assert_eq!(e.kind, ErrorKind::TooDeep, "{e}");
    // A left-leaning chain of `or` is as deep as it is long.
    let chain = format!("block when {}", vec!["true"; MAX_DEPTH + 1].join(" or "));
    assert_eq!(error(&chain).kind, ErrorKind::TooDeep);
    let fits = format!("block when {}", vec!["true"; MAX_DEPTH / 2].join(" or "));
    assert!(
        parse_rule(&fits)
            .and_then(|r| compile(&r.condition))
            .is_ok()
    );
    // Size: 40 groups of seven nodes, joined by `and`s, is over 256 nodes.
    let wide = format!(
        "block when {}",
        vec!["(payment.amount > 1 or topup.amount > 2)"; 40].join(" and ")
    );
    assert_eq!(error(&wide).kind, ErrorKind::TooLarge);
    assert_eq!(
        error(&format!("block when {}", " ".repeat(MAX_SOURCE_BYTES))).kind,
        ErrorKind::TooLarge
    );
    // Trees built in code are held to the same limits by the checker.
    let mut e = Expr::new(ExprKind::Lit(Literal::Bool(true)));
    for _ in 0..300 {
        e = Expr::new(ExprKind::Not(Box::new(e)));
    }
    assert_eq!(compile(&e).unwrap_err().kind, ErrorKind::TooDeep);
}

// ---------------------------------------------------------------------------------------------
// Rule sets: precedence, allow, shadow mode.

fn decide(rules: &[(&str, &str, i32, Mode)], f: &Features) -> Decision {
    let set = RuleSet::from_specs(rules.iter().map(|(n, s, p, m)| spec(n, s, *p, *m))).unwrap();
    set.evaluate(f)
}

fn names(v: &[std::sync::Arc<str>]) -> Vec<&str> {
    v.iter().map(|s| &**s).collect()
}

#[test]
fn the_most_severe_live_outcome_wins() {
    use Mode::Live;
    let f = Features::new();
    let d = decide(
        &[
            ("r", "review when true", 10, Live),
            ("s", "step_up when true", 1, Live),
            ("b", "block when true", 5, Live),
            ("n", "block when false", 99, Live),
        ],
        &f,
    );
    assert_eq!(d.outcome, Outcome::Block);
    assert_eq!(d.decided_by.as_deref(), Some("b"));
    assert_eq!(
        names(&d.fired_live),
        ["r", "b", "s"],
        "highest priority first"
    );
    assert!(d.open_case, "the review rule fired and was not suppressed");
    assert!(d.suppressed.is_empty() && d.fired_shadow.is_empty());

    let d = decide(
        &[
            ("r", "review when true", 10, Live),
            ("s", "step_up when true", 1, Live),
        ],
        &f,
    );
    assert_eq!(
        (d.outcome, d.decided_by.as_deref()),
        (Outcome::StepUp, Some("s"))
    );

    // Nothing fires: allow, decided by no rule.
    let d = decide(&[("n", "block when false", 1, Live)], &f);
    assert_eq!(d, Decision::default());

    // Equal severity: the higher priority decides; equal priority: the one given first.
    let d = decide(
        &[
            ("b1", "block when true", 1, Live),
            ("b2", "block when true", 2, Live),
            ("b3", "block when true", 2, Live),
        ],
        &f,
    );
    assert_eq!(d.decided_by.as_deref(), Some("b2"));
}

#[test]
fn an_explicit_allow_suppresses_lower_priority_rules_only() {
    use Mode::Live;
    let f = Features::new();
    let rules = [
        ("hold", "block when true", 100, Live),
        ("trusted", "allow when true", 50, Live),
        ("velocity", "review when true", 40, Live),
        ("new_device", "step_up when true", 10, Live),
    ];
    let d = decide(&rules, &f);
    assert_eq!(
        (d.outcome, d.decided_by.as_deref()),
        (Outcome::Block, Some("hold"))
    );
    assert_eq!(names(&d.suppressed), ["velocity", "new_device"]);
    assert!(!d.open_case, "a suppressed review opens no case");

    let d = decide(&rules[1..], &f);
    assert_eq!(
        (d.outcome, d.decided_by.as_deref()),
        (Outcome::Allow, Some("trusted"))
    );
    assert_eq!(names(&d.fired_live), ["trusted", "velocity", "new_device"]);

    // An allow never overrides a rule of its own priority.
    let d = decide(
        &[
            ("trusted", "allow when true", 50, Live),
            ("same_level", "step_up when true", 50, Live),
        ],
        &f,
    );
    assert_eq!(d.outcome, Outcome::StepUp);
    assert!(d.suppressed.is_empty());

    // An allow that does not fire suppresses nothing.
    let d = decide(
        &[
            ("trusted", "allow when false", 50, Live),
            ("velocity", "review when true", 40, Live),
        ],
        &f,
    );
    assert_eq!(d.outcome, Outcome::Review);
    assert!(d.open_case);
}

#[test]
fn shadow_rules_are_reported_but_never_decide() {
    use Mode::{Live, Shadow};
    let f = Features::new();
    let d = decide(
        &[
            ("live_review", "review when true", 10, Live),
            ("try_block", "block when true", 20, Shadow),
            ("try_allow", "allow when true", 30, Shadow),
            ("quiet", "block when false", 30, Shadow),
        ],
        &f,
    );
    assert_eq!(
        (d.outcome, d.decided_by.as_deref()),
        (Outcome::Review, Some("live_review"))
    );
    assert_eq!(names(&d.fired_live), ["live_review"]);
    assert_eq!(names(&d.fired_shadow), ["try_allow", "try_block"]);
    assert!(
        d.suppressed.is_empty(),
        "a shadow allow suppresses nothing live"
    );
    // Promoting the shadow rules: the shadow allow (30) would suppress both others.
    assert_eq!(d.shadow_outcome, Outcome::Allow);

    let d = decide(
        &[
            ("live_review", "review when true", 10, Live),
            ("try_block", "block when true", 20, Shadow),
        ],
        &f,
    );
    assert_eq!(
        (d.outcome, d.shadow_outcome),
        (Outcome::Review, Outcome::Block)
    );
}

#[test]
fn faults_are_reported_and_never_fire() {
    let mut f = Features::new();
    f.set_money(MoneyFeature::PaymentAmount, 5_000)
        .set_money(MoneyFeature::CustomerAvgPayment, 0);
    let d = decide(
        &[
            (
                "ratio",
                "block when payment.amount / customer.avg_payment >= 5",
                1,
                Mode::Live,
            ),
            ("other", "review when payment.amount > 1000", 1, Mode::Live),
        ],
        &f,
    );
    assert_eq!(d.outcome, Outcome::Review);
    assert_eq!(names(&d.faulted), ["ratio"]);
}

#[test]
fn rule_definitions_are_validated() {
    let ok = spec(
        "velocity.topups-1h",
        "review when topups.count(1h) >= 4",
        1,
        Mode::Live,
    );
    let rule = Rule::new(ok.clone()).unwrap();
    assert_eq!(rule.spec(), ok);
    assert_eq!(rule.outcome(), Outcome::Review);
    assert_eq!(rule.ast().to_string(), "review when topups.count(1h) >= 4");

    for bad in ["", "Upper", "with space", &"x".repeat(MAX_NAME_CHARS + 1)] {
        assert_eq!(
            Rule::new(spec(bad, "block when true", 1, Mode::Live)).unwrap_err(),
            DefinitionError::BadName
        );
    }
    let mut long = ok.clone();
    long.description = "x".repeat(MAX_DESCRIPTION_CHARS + 1);
    assert_eq!(
        Rule::new(long).unwrap_err(),
        DefinitionError::DescriptionTooLong
    );

    let e = Rule::new(spec("typo", "block when payment.amont > 1", 1, Mode::Live)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "rule `typo`: unknown feature `payment.amont` at 1:12 (did you mean `payment.amount`?)"
    );

    let dup = RuleSet::from_specs([ok.clone(), ok.clone()]).unwrap_err();
    assert_eq!(
        dup,
        DefinitionError::DuplicateName("velocity.topups-1h".into())
    );
    let many = (0..=MAX_RULES).map(|i| spec(&format!("r{i}"), "block when false", 0, Mode::Live));
    assert_eq!(
        RuleSet::from_specs(many).unwrap_err(),
        DefinitionError::TooManyRules
    );

    // Specs are plain data for the store and the admin API; unknown fields are refused.
    let json =
        r#"{"name":"t","source":"block when true","priority":1,"mode":"shadow","version":3}"#;
    let parsed: RuleSpec = serde_json::from_str(json).unwrap();
    assert_eq!(
        (parsed.mode, parsed.description.as_str()),
        (Mode::Shadow, "")
    );
    assert_eq!(serde_json::to_string(&parsed.mode).unwrap(), "\"shadow\"");
    let extra = r#"{"name":"t","source":"block when true","priority":1,"mode":"live","version":3,"sauce":1}"#;
    assert!(serde_json::from_str::<RuleSpec>(extra).is_err());
    assert_eq!(
        serde_json::to_string(&Outcome::StepUp).unwrap(),
        "\"step_up\""
    );
}

// ---------------------------------------------------------------------------------------------
// The catalogue. (The shipped default rules and the 7pay patterns are in `risk_defaults.rs`.)

#[test]
fn the_catalogue_documents_every_required_feature() {
    let required = [
        "account.age",
        "since.recovery",
        "since.password_change",
        "since.contact_change",
        "device.age",
        "device.accounts",
        "card.accounts",
        "customer.tier",
        "customer.recovery_hold",
        "customer.avg_payment",
        "customer.max_payment",
        "payment.amount",
        "topup.amount",
        "event.kind",
        "payments.count",
        "payments.sum",
        "topups.count",
        "topups.sum",
        "device.payments.count",
        "card.topups.count",
        "store.payments.count",
        "terminal.payments.count",
        "basket.quantity",
        "basket.amount",
        "basket.lines",
        "travel.km",
        "travel.minutes",
        "travel.km_per_hour",
    ];
    for name in required {
        let def = catalogue()
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert!(!def.description.is_empty());
    }
    let ty = |n: &str| {
        catalogue()
            .iter()
            .find(|d| d.name == n)
            .map(|d| (d.ty(), d.arg()))
    };
    assert_eq!(ty("travel.minutes"), Some((Ty::Duration, ArgKind::None)));
    assert_eq!(ty("travel.km_per_hour"), Some((Ty::Int, ArgKind::None)));
    assert_eq!(ty("payments.sum"), Some((Ty::Money, ArgKind::Window)));
    assert_eq!(ty("basket.quantity"), Some((Ty::Count, ArgKind::Category)));
    assert_eq!(ty("customer.tier"), Some((Ty::Str, ArgKind::None)));
    let md = catalogue_markdown();
    for d in catalogue() {
        assert!(md.contains(&format!("`{}`", d.signature())), "{}", d.name);
    }
}

// ---------------------------------------------------------------------------------------------
// Property tests.

/// Every lexeme of the language, plus near-misses, for token soups.
const LEXEMES: &[&str] = &[
    "allow",
    "step_up",
    "review",
    "block",
    "when",
    "and",
    "or",
    "not",
    "in",
    "true",
    "false",
    "(",
    ")",
    "[",
    "]",
    ",",
    ".",
    "+",
    "-",
    "*",
    "/",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "=",
    "!",
    "0",
    "1",
    "730_000",
    "9223372036854775807",
    "9223372036854775808",
    "24h",
    "7d",
    "30s",
    "10m",
    "2h",
    "1_",
    "\"tobacco\"",
    "\"new\"",
    "\"gold\"",
    "\"",
    "\"\\",
    "#",
    "\n",
    "payment.amount",
    "device.age",
    "topups.count",
    "basket.quantity",
    "customer.tier",
    "event.kind",
    "customer.recovery_hold",
    "card.accounts",
    "travel.km",
    "payment",
    "amount",
    "é",
    "\t",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(LEXEMES), 0..48).prop_map(|v| v.join(" "))
}

/// Any source at all must produce a result, never a panic; accepted rules must evaluate.
fn exercise(src: &str, features: &Features) {
    let _ = parse_expr(src).map(|e| compile(&e));
    if let Ok(rule) = parse_rule(src)
        && let Ok(p) = compile(&rule.condition)
    {
        let _ = p.eval(features);
    }
}

fn any_features() -> impl Strategy<Value = Features> {
    let value = prop_oneof![
        -5i64..5_000,
        Just(0i64),
        Just(i64::MAX),
        Just(i64::MIN),
        any::<i64>()
    ];
    prop::collection::vec((0usize..SETTERS, value), 0..160).prop_map(|sets| {
        let mut f = Features::new();
        for (k, v) in sets {
            set(&mut f, k, v);
        }
        f
    })
}

const SETTERS: usize = 6 + 4 + 3 + 2 + 3 + 9 * 4 + 11;

/// Applies setter number `k` (`k < SETTERS`, covering every typed setter of `Features`)
/// with value `v`.
fn set(f: &mut Features, mut k: usize, v: i64) {
    if let Some(&x) = DurationFeature::ALL.get(k) {
        f.set_duration(x, v);
        return;
    }
    k -= DurationFeature::ALL.len();
    if let Some(&x) = MoneyFeature::ALL.get(k) {
        f.set_money(x, v);
        return;
    }
    k -= MoneyFeature::ALL.len();
    if let Some(&x) = CountFeature::ALL.get(k) {
        f.set_count(x, v);
        return;
    }
    k -= CountFeature::ALL.len();
    if let Some(&x) = IntFeature::ALL.get(k) {
        f.set_int(x, v);
        return;
    }
    k -= IntFeature::ALL.len();
    let i = v.unsigned_abs() as usize;
    match k {
        0 => {
            f.set_tier(Tier::ALL[i % Tier::ALL.len()]);
            return;
        }
        1 => {
            f.set_event_kind(EventKind::ALL[i % EventKind::ALL.len()]);
            return;
        }
        2 => {
            f.set_recovery_hold(v % 2 == 0);
            return;
        }
        _ => k -= 3,
    }
    let windows = WindowCounter::ALL.len() * Window::ALL.len();
    if k < windows {
        let (c, w) = (k / Window::ALL.len(), k % Window::ALL.len());
        f.set_window(WindowCounter::ALL[c], Window::ALL[w], v);
        return;
    }
    k -= windows;
    f.add_basket_line(Category::ALL[k % Category::ALL.len()], v, v.wrapping_mul(3));
}

// Random well-formed trees, for the printer round trip.

fn ident() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,8}".prop_filter("not a keyword", |s| !KEYWORDS.contains(&s.as_str()))
}

fn literal() -> impl Strategy<Value = Literal> {
    let unit = prop::sample::select(vec![
        TimeUnit::Seconds,
        TimeUnit::Minutes,
        TimeUnit::Hours,
        TimeUnit::Days,
    ]);
    prop_oneof![
        prop_oneof![0i64..1_000_000, 0i64..=i64::MAX].prop_map(Literal::Int),
        (0i64..=i64::MAX / 86_400_000, unit).prop_map(|(n, u)| Literal::Duration(n, u)),
        "[a-z_ \"\\\\#é]{0,12}".prop_map(Literal::Str),
        any::<bool>().prop_map(Literal::Bool),
    ]
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        literal().prop_map(|l| Expr::new(ExprKind::Lit(l))),
        (
            prop::collection::vec(ident(), 1..4),
            prop::option::of(literal())
        )
            .prop_map(|(segs, arg)| Expr::new(ExprKind::Feature {
                path: segs.join("."),
                arg: arg.map(|value| Arg {
                    value,
                    pos: Pos { line: 1, col: 1 },
                }),
            })),
    ]
}

fn tree() -> impl Strategy<Value = Expr> {
    let arith = prop::sample::select(vec![ArithOp::Add, ArithOp::Sub, ArithOp::Mul, ArithOp::Div]);
    let cmp = prop::sample::select(vec![
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Le,
        CmpOp::Gt,
        CmpOp::Ge,
    ]);
    leaf().prop_recursive(6, 48, 3, move |inner| {
        let b = |e: Expr| Box::new(e);
        prop_oneof![
            inner
                .clone()
                .prop_map(move |x| Expr::new(ExprKind::Neg(b(x)))),
            inner
                .clone()
                .prop_map(move |x| Expr::new(ExprKind::Not(b(x)))),
            (arith.clone(), inner.clone(), inner.clone())
                .prop_map(move |(o, l, r)| Expr::new(ExprKind::Arith(o, b(l), b(r)))),
            (cmp.clone(), inner.clone(), inner.clone())
                .prop_map(move |(o, l, r)| Expr::new(ExprKind::Cmp(o, b(l), b(r)))),
            (inner.clone(), inner.clone())
                .prop_map(move |(l, r)| Expr::new(ExprKind::And(b(l), b(r)))),
            (inner.clone(), inner.clone())
                .prop_map(move |(l, r)| Expr::new(ExprKind::Or(b(l), b(r)))),
            (
                inner.clone(),
                prop::collection::vec("[a-z_]{0,8}", 1..4),
                any::<bool>()
            )
                .prop_map(move |(v, items, negated)| Expr::new(ExprKind::In {
                    value: b(v),
                    list: items
                        .into_iter()
                        .map(|value| ListItem {
                            value,
                            pos: Pos { line: 1, col: 1 },
                        })
                        .collect(),
                    negated,
                })),
        ]
    })
}

// Random well-typed conditions over the real catalogue, for the evaluator.

fn int_lit() -> impl Strategy<Value = String> {
    prop_oneof![0i64..10_000, 0i64..=i64::MAX].prop_map(|n| n.to_string())
}

/// A numeric expression of one type family: a leaf of the type (or a plain number where the
/// type accepts one), combined with `+ - * /` and unary minus.
fn number(leaves: &'static [&'static str], plain: bool) -> BoxedStrategy<String> {
    let leaf = if plain {
        prop_oneof![
            prop::sample::select(leaves).prop_map(str::to_string),
            int_lit()
        ]
        .boxed()
    } else {
        prop::sample::select(leaves)
            .prop_map(str::to_string)
            .boxed()
    };
    leaf.prop_recursive(3, 12, 2, move |inner| {
        prop_oneof![
            (
                inner.clone(),
                inner.clone(),
                prop::sample::select(vec!["+", "-"])
            )
                .prop_map(|(a, b, op)| format!("({a} {op} {b})")),
            (
                inner.clone(),
                int_lit(),
                prop::sample::select(vec!["*", "/"])
            )
                .prop_map(|(a, n, op)| format!("({a} {op} {n})")),
            inner.prop_map(|a| format!("-{a}")),
            // Two features of one type divide to a plain ratio, fine where plain numbers are.
            (
                prop::sample::select(leaves),
                prop::sample::select(leaves),
                Just(plain)
            )
                .prop_map(|(a, b, plain)| if plain {
                    format!("({a} / {b})")
                } else {
                    format!("({a} - {b})")
                }),
        ]
    })
    .boxed()
}

const MONEY: &[&str] = &[
    "payment.amount",
    "topup.amount",
    "customer.avg_payment",
    "customer.max_payment",
    "payments.sum(1h)",
    "topups.sum(24h)",
    "card.topups.sum(7d)",
    "basket.amount(\"gift_card\")",
];
const COUNT: &[&str] = &[
    "card.accounts",
    "device.accounts",
    "basket.lines",
    "topups.count(10m)",
    "payments.count(7d)",
    "store.payments.count(1h)",
    "basket.quantity(\"e_cigarette\")",
];
const DURATION: &[&str] = &[
    "account.age",
    "device.age",
    "since.recovery",
    "since.password_change",
    "since.contact_change",
    "travel.minutes",
    "24h",
    "30s",
    "7d",
    "0m",
];
const INT: &[&str] = &["travel.km", "travel.km_per_hour"];

fn comparison() -> impl Strategy<Value = String> {
    let op = prop::sample::select(vec!["==", "!=", "<", "<=", ">", ">="]);
    let same = |leaves: &'static [&'static str], plain: bool| {
        (number(leaves, plain), number(leaves, plain))
    };
    (
        prop_oneof![
            same(MONEY, true),
            same(COUNT, true),
            same(DURATION, false),
            same(INT, true)
        ],
        op,
    )
        .prop_map(|((a, b), op)| format!("{a} {op} {b}"))
}

fn condition() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        4 => comparison(),
        1 => prop::sample::select(Tier::NAMES).prop_map(|t| format!("customer.tier == \"{t}\"")),
        1 => prop::collection::vec(prop::sample::select(EventKind::NAMES), 1..4)
            .prop_map(|v| format!("event.kind in [\"{}\"]", v.join("\", \""))),
        1 => prop::sample::select(EventKind::NAMES).prop_map(|k| format!("event.kind == \"{k}\"")),
        1 => prop::sample::select(EventKind::NAMES).prop_map(|k| format!("\"{k}\" == event.kind")),
        1 => Just("customer.recovery_hold".to_string()),
        1 => Just("true".to_string()),
    ];
    leaf.prop_recursive(4, 16, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} and {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} or {b})")),
            inner.prop_map(|a| format!("not ({a})")),
        ]
    })
}

/// A value in the reference evaluator: a number (booleans are 0/1) or a string.
#[derive(Debug, Clone, PartialEq)]
enum V {
    N(i64),
    S(String),
}

/// Reads the tree directly, with the documented semantics, independently of the compiler:
/// unknown features and faulty arithmetic are `None`, logic is three-valued and lazy.
fn reference(e: &Expr, env: &HashMap<String, Value>, faulted: &mut bool) -> Option<V> {
    let num = |e: &Expr, faulted: &mut bool| match reference(e, env, faulted) {
        Some(V::N(n)) => Some(n),
        _ => None,
    };
    Some(match &e.kind {
        ExprKind::Lit(Literal::Int(n)) => V::N(*n),
        ExprKind::Lit(l @ Literal::Duration(..)) => V::N(l.duration_ms()?),
        ExprKind::Lit(Literal::Bool(b)) => V::N(i64::from(*b)),
        ExprKind::Lit(Literal::Str(s)) => V::S(s.clone()),
        ExprKind::Feature { .. } => match env.get(&e.to_string())? {
            Value::Int(n) | Value::Money(n) | Value::Duration(n) | Value::Count(n) => V::N(*n),
            Value::Bool(b) => V::N(i64::from(*b)),
            Value::Str(s) => V::S(s.to_string()),
        },
        ExprKind::Neg(x) => {
            let r = num(x, faulted)?.checked_neg();
            *faulted |= r.is_none();
            V::N(r?)
        }
        ExprKind::Not(x) => V::N(i64::from(num(x, faulted)? == 0)),
        ExprKind::Arith(op, l, r) => {
            let (a, b) = (num(l, faulted), num(r, faulted));
            let r = match op {
                ArithOp::Add => a?.checked_add(b?),
                ArithOp::Sub => a?.checked_sub(b?),
                ArithOp::Mul => a?.checked_mul(b?),
                ArithOp::Div => a?.checked_div(b?),
            };
            *faulted |= r.is_none();
            V::N(r?)
        }
        ExprKind::Cmp(op, l, r) => {
            let (a, b) = (reference(l, env, faulted), reference(r, env, faulted));
            let ord = match (a?, b?) {
                (V::N(a), V::N(b)) => a.cmp(&b),
                (V::S(a), V::S(b)) => a.cmp(&b),
                _ => return None,
            };
            V::N(i64::from(match op {
                CmpOp::Eq => ord.is_eq(),
                CmpOp::Ne => ord.is_ne(),
                CmpOp::Lt => ord.is_lt(),
                CmpOp::Le => ord.is_le(),
                CmpOp::Gt => ord.is_gt(),
                CmpOp::Ge => ord.is_ge(),
            }))
        }
        ExprKind::And(l, r) => match num(l, faulted) {
            Some(0) => V::N(0),
            a => match (a, num(r, faulted)) {
                (_, Some(0)) => V::N(0),
                (Some(_), Some(_)) => V::N(1),
                _ => return None,
            },
        },
        ExprKind::Or(l, r) => match num(l, faulted) {
            Some(x) if x != 0 => V::N(1),
            a => match (a, num(r, faulted)) {
                (_, Some(x)) if x != 0 => V::N(1),
                (Some(_), Some(_)) => V::N(0),
                _ => return None,
            },
        },
        ExprKind::In {
            value,
            list,
            negated,
        } => match reference(value, env, faulted)? {
            V::S(s) => V::N(i64::from(list.iter().any(|i| i.value == s) != *negated)),
            V::N(_) => return None,
        },
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_strings_never_panic(src in "\\PC{0,160}", features in any_features()) {
        exercise(&src, &features);
        exercise(&format!("block when {src}"), &features);
    }

    #[test]
    fn random_token_soups_never_panic(soup in token_soup(), features in any_features()) {
        exercise(&soup, &features);
        exercise(&format!("review when {soup}"), &features);
    }

    #[test]
    fn printed_trees_parse_back_to_themselves(e in tree(), outcome in prop::sample::select(Outcome::ALL.to_vec())) {
        let printed = e.to_string();
        let parsed = parse_expr(&printed).map_err(|err| TestCaseError::fail(format!("{printed}: {err}")))?;
        prop_assert_eq!(&parsed, &e, "{}", printed);
        prop_assert_eq!(parsed.to_string(), printed);
        let rule = RuleAst { outcome, condition: e };
        prop_assert_eq!(parse_rule(&rule.to_string()), Ok(rule));
        // Whatever the tree means, checking it ends in an answer.
        let _ = compile(&parsed);
    }

    #[test]
    fn journaled_features_round_trip_and_decide_the_same(
        features in any_features(),
        src in condition(),
    ) {
        let json = features.to_json();
        prop_assert_eq!(&serde_json::to_value(&features).unwrap(), &json, "serde writes the same form");
        let back = Features::from_json(&json).map_err(|e| TestCaseError::fail(format!("{json}: {e}")))?;
        prop_assert_eq!(&back, &features);
        prop_assert_eq!(back.entries(), features.entries());
        // Through text, as the journal stores it.
        let text = serde_json::to_string(&features).unwrap();
        prop_assert_eq!(&features.journal_string(), &text, "the hand-written form is serde's, byte for byte");
        let reread: Features = serde_json::from_str(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(&reread, &features);
        // Packed, as a payment's row stores it: the same features, so the same text.
        let unpacked = Features::from_journal_bytes(&features.journal_bytes())
            .map_err(|e| TestCaseError::fail(format!("{features:?}: {e}")))?;
        prop_assert_eq!(&unpacked, &features);
        prop_assert_eq!(unpacked.journal_string(), text);
        // Deciding on the journaled form gives the same decision, rule by rule.
        let defaults = RuleSet::from_specs(default_rules()).unwrap();
        prop_assert_eq!(defaults.evaluate(&reread), defaults.evaluate(&features));
        let p = compile(&parse_expr(&src).unwrap()).unwrap();
        prop_assert_eq!(p.eval(&reread), p.eval(&features), "{}", src);
    }

    /// A rule is not evaluated on an event it cannot fire on (`Rule::can_fire_on`): on such
    /// an event its condition is never true, and deciding with or without skipping it gives
    /// the same outcome.
    #[test]
    fn rules_skipped_for_another_event_kind_could_not_have_fired(
        src in condition(),
        mut features in any_features(),
        kind in prop::sample::select(EventKind::ALL.to_vec()),
    ) {
        features.set_event_kind(kind);
        let rule = Rule::new(spec("r", &format!("block when {src}"), 0, Mode::Live)).unwrap();
        if !rule.can_fire_on(&features) {
            prop_assert_ne!(rule.eval(&features).truth, Truth::True, "{} on {:?}", src, kind);
        }
        let set = RuleSet::new(vec![rule]).unwrap();
        let fired = set.evaluate(&features).outcome == Outcome::Block;
        let true_here = Rule::new(spec("r", &format!("block when {src}"), 0, Mode::Live))
            .unwrap()
            .eval(&features)
            .truth
            == Truth::True;
        prop_assert_eq!(fired, true_here, "{}", src);
        for r in RuleSet::from_specs(default_rules()).unwrap().rules() {
            if !r.can_fire_on(&features) {
                prop_assert_ne!(r.eval(&features).truth, Truth::True, "{}", r.name());
            }
            if let Some(e) = r.eval_as_in_a_set(&features) {
                prop_assert_eq!(e, r.eval(&features), "{}", r.name());
            }
        }
    }

    /// A rule set skips a rule's leading test of the event's kind once the kind is known to
    /// pass it: the shorter condition gives the same truth and fault as the whole one.
    #[test]
    fn a_leading_kind_test_skipped_changes_nothing(
        src in condition(),
        more in condition(),
        mut features in any_features(),
        kind in prop::sample::select(EventKind::ALL.to_vec()),
        tested in prop::sample::subsequence(EventKind::ALL.to_vec(), 1..4),
        known_kind in any::<bool>(),
        nested in any::<bool>(),
    ) {
        let names: Vec<String> = tested.iter().map(|k| format!("\"{}\"", k.as_str())).collect();
        let test = if names.len() == 1 {
            format!("event.kind == {}", names[0])
        } else {
            format!("event.kind in [{}]", names.join(", "))
        };
        let source = if nested {
            format!("block when {test} and ({src}) and ({more})")
        } else {
            format!("block when {test} and ({src})")
        };
        if known_kind {
            features.set_event_kind(kind);
        }
        let rule = Rule::new(spec("r", &source, 0, Mode::Live)).unwrap();
        if let Some(e) = rule.eval_as_in_a_set(&features) {
            prop_assert_eq!(e, rule.eval(&features), "{}", source);
        } else {
            prop_assert_ne!(rule.eval(&features).truth, Truth::True, "{}", source);
        }
    }

    #[test]
    fn well_typed_conditions_compile_and_agree_with_the_tree(
        src in condition(),
        features in any_features(),
    ) {
        let e = parse_expr(&src).map_err(|err| TestCaseError::fail(format!("{src}: {err}")))?;
        let p = compile(&e).map_err(|err| TestCaseError::fail(format!("{src}: {err}")))?;
        let env: HashMap<String, Value> = features.entries().into_iter().collect();
        let mut faulted = false;
        let want = match reference(&e, &env, &mut faulted) {
            Some(V::N(0)) => Truth::False,
            Some(V::N(_)) => Truth::True,
            Some(V::S(_)) => return Err(TestCaseError::fail("a string condition")),
            None => Truth::Unknown,
        };
        prop_assert_eq!(p.eval(&features), Evaluation { truth: want, faulted }, "{}", src);
    }
}
