//! `docs/risk.md` stays true: its generated sections equal what the code generates, and every
//! rule it shows as an example compiles.
//!
//! The generated sections sit between HTML comments (`<!-- catalogue:start -->` ...
//! `<!-- catalogue:end -->`, likewise `default-rules` and `limits`). After changing the
//! catalogue, the default rules or the default limits, regenerate them with
//!
//! ```sh
//! KONBINI_BLESS_DOCS=1 cargo test -p konbini-core --test risk_docs
//! ```

use std::path::PathBuf;

use konbini_core::risk::*;

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/risk.md")
}

fn yen(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{}¥{out}", if n < 0 { "-" } else { "" })
}

/// The default limits as the Markdown table of `docs/risk.md`.
fn limits_markdown() -> String {
    let l = TierLimits::default();
    let mut out = String::from(
        "| tier | top-up per transaction | top-up per day | top-up per month | payment per transaction | payment per day | payment per month |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    for &tier in Tier::ALL {
        let t = l.get(tier);
        let cells: Vec<String> = [t.topup, t.payment]
            .iter()
            .flat_map(|a| [a.per_transaction_minor, a.per_day_minor, a.per_month_minor])
            .map(yen)
            .collect();
        out.push_str(&format!("| {tier} | {} |\n", cells.join(" | ")));
    }
    out
}

fn sections() -> [(&'static str, String); 3] {
    [
        ("catalogue", catalogue_markdown()),
        ("default-rules", default_rules_markdown()),
        ("limits", limits_markdown()),
    ]
}

/// The text between `<!-- name:start -->\n` and `<!-- name:end -->`, and its byte range.
fn section(doc: &str, name: &str) -> (usize, usize) {
    let start = format!("<!-- {name}:start -->\n");
    let end = format!("<!-- {name}:end -->");
    let s = doc
        .find(&start)
        .unwrap_or_else(|| panic!("docs/risk.md has no `{}`", start.trim()))
        + start.len();
    let e = doc[s..]
        .find(&end)
        .unwrap_or_else(|| panic!("docs/risk.md has no `{end}`"))
        + s;
    (s, e)
}

#[test]
fn generated_sections_match_the_code() {
    let path = doc_path();
    let mut doc = std::fs::read_to_string(&path).expect("docs/risk.md exists");
    let bless = std::env::var_os("KONBINI_BLESS_DOCS").is_some();
    let mut stale = Vec::new();
    for (name, want) in sections() {
        let (s, e) = section(&doc, name);
        if doc[s..e] != want {
            if bless {
                doc.replace_range(s..e, &want);
            } else {
                stale.push(name);
            }
        }
    }
    if bless {
        std::fs::write(&path, &doc).expect("docs/risk.md is writable");
    }
    assert!(
        stale.is_empty(),
        "docs/risk.md is out of date in {stale:?}; regenerate with \
         KONBINI_BLESS_DOCS=1 cargo test -p konbini-core --test risk_docs"
    );
}

#[test]
fn every_rule_example_compiles() {
    let doc = std::fs::read_to_string(doc_path()).expect("docs/risk.md exists");
    let mut n = 0;
    let mut rest = doc.as_str();
    while let Some(i) = rest.find("```rule\n") {
        let body = &rest[i + "```rule\n".len()..];
        let end = body.find("```").expect("a closed code block");
        // One rule per paragraph; a rule may span lines.
        for src in body[..end].split("\n\n").filter(|s| !s.trim().is_empty()) {
            let rule = parse_rule(src).unwrap_or_else(|e| panic!("{src}\n{e}"));
            compile(&rule.condition).unwrap_or_else(|e| panic!("{src}\n{e}"));
            n += 1;
        }
        rest = &body[end + 3..];
    }
    assert!(n >= 10, "only {n} rule examples found");
}

#[test]
fn yen_formatting() {
    assert_eq!(yen(0), "¥0");
    assert_eq!(yen(999), "¥999");
    assert_eq!(yen(1_000), "¥1,000");
    assert_eq!(yen(1_000_000), "¥1,000,000");
    assert_eq!(yen(-20_000), "-¥20,000");
}
