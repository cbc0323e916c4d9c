//! `konbini risk`: the stored rules, and backtesting a candidate rule against the decision
//! journal (the same replay as `POST /v1/admin/risk/backtest`).

use konbini_core::risk::{KindCounts, Outcome};
use konbini_server::app::admin::{self, BacktestRun, CandidateRule};
use konbini_store::Db;
use std::path::Path;

/// Largest rule file read (a rule is at most 8 KiB of source).
const MAX_RULE_FILE_BYTES: u64 = 64 * 1024;

/// Reads a candidate rule from a TOML or JSON file with the fields of the API's `rule`
/// (`name`, `description`, `source`, `priority`, optionally `mode`). JSON when the name ends
/// in `.json` or the text starts with `{`, TOML otherwise.
pub fn read_rule_file(path: &Path) -> Result<CandidateRule, String> {
    let shown = path.display();
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {shown}: {e}"))?
        .len();
    if size > MAX_RULE_FILE_BYTES {
        return Err(format!(
            "{shown} is {size} bytes; a rule file is at most {MAX_RULE_FILE_BYTES}"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let json = path.extension().is_some_and(|e| e == "json") || text.trim_start().starts_with('{');
    if json {
        serde_json::from_str(&text).map_err(|e| format!("{shown} is not a rule (JSON): {e}"))
    } else {
        toml::from_str(&text).map_err(|e| format!("{shown} is not a rule (TOML): {e}"))
    }
}

/// A `--from`/`--to` value: unix milliseconds, or a `YYYY-MM-DD` business day in JST. A day
/// given as `--from` starts the window at its beginning; as `--to` it ends it at its end (so
/// `--from 2026-11-01 --to 2026-11-30` is the whole of November).
pub fn parse_bound(value: &str, end_of_day: bool) -> Result<i64, String> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value
            .parse::<i64>()
            .map_err(|_| format!("'{value}' is too large for unix milliseconds"));
    }
    let (start, end) =
        crate::provision::jst_day(value).map_err(|e| format!("{e}, nor unix milliseconds"))?;
    Ok(if end_of_day { end } else { start })
}

/// `konbini risk backtest`: runs the replay and prints a summary.
pub fn backtest(db: Db, rule_file: &Path, from: &str, to: &str) -> Result<(), String> {
    let candidate = read_rule_file(rule_file)?;
    let (from_ms, to_ms) = (parse_bound(from, false)?, parse_bound(to, true)?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let run = runtime
        .block_on(admin::run_backtest(&db, candidate, from_ms, to_ms))
        .map_err(|e| e.to_string())?;
    print!("{}", summary(&run));
    Ok(())
}

/// `2026-11-25 09:00:00 JST` for unix milliseconds.
fn jst(ms: i64) -> String {
    let secs = (ms + 9 * 3_600_000).div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since the epoch (Howard Hinnant's civil_from_days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} JST",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The report as an analyst reads it: how often the rule fires, what it changes, what it
/// costs analysts.
pub fn summary(run: &BacktestRun) -> String {
    let r = &run.report;
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    let how = if r.replaced {
        "replacing the stored rule of that name"
    } else {
        "added to the stored rules"
    };
    line(format!(
        "backtest of `{}` ({}, replayed live, {how})",
        r.rule, r.outcome
    ));
    line(format!(
        "window: {} to {} ({} to {} ms, end excluded)",
        jst(run.from_ms),
        jst(run.to_ms),
        run.from_ms,
        run.to_ms
    ));
    line(format!("events replayed: {}", r.evaluated));
    if let (Some(a), Some(b)) = (r.first_at_ms, r.last_at_ms) {
        line(format!("  first {}, last {}", jst(a), jst(b)));
    }
    if run.truncated {
        line(format!(
            "  CUT SHORT: only the first {} journaled decisions were read; narrow the window",
            run.max_events
        ));
    }
    if run.unreadable > 0 {
        line(format!(
            "  {} journal entries could not be read with the current feature catalogue and were skipped",
            run.unreadable
        ));
    }
    line(format!(
        "fired: {}   decided: {}   suppressed by an allow rule: {}   faulted: {}",
        r.fired, r.decided, r.suppressed, r.faulted
    ));
    line(format!(
        "changed from the recorded outcome: {}   from the current rules' outcome: {}",
        r.changed, r.changed_vs_current
    ));
    let moves: Vec<String> = Outcome::ALL
        .iter()
        .flat_map(|&from| Outcome::ALL.iter().map(move |&to| (from, to)))
        .filter(|(from, to)| from != to && r.transitions.get(*from, *to) > 0)
        .map(|(from, to)| format!("  {from} -> {to}: {}", r.transitions.get(from, to)))
        .collect();
    if moves.is_empty() {
        line("transitions (recorded -> with the rule): none".into());
    } else {
        line("transitions (recorded -> with the rule):".into());
        moves.into_iter().for_each(&mut line);
    }
    line(format!(
        "cases: {} new case events, {} new cases (customers), {} case events dropped",
        r.new_case_events, r.new_cases, r.dropped_case_events
    ));
    if !r.by_kind.is_empty() {
        line("by event kind:".into());
        for (
            kind,
            KindCounts {
                evaluated,
                fired,
                changed,
            },
        ) in &r.by_kind
        {
            line(format!(
                "  {:<15} evaluated {evaluated:>7}   fired {fired:>7}   changed {changed:>7}",
                kind.as_str()
            ));
        }
    }
    if !r.examples.is_empty() {
        line("examples (journal id, customer, when, recorded -> new, deciding rule):".into());
        for e in &r.examples {
            line(format!(
                "  {} {} {} {} {} -> {} ({})",
                e.id,
                e.customer_id,
                jst(e.at_ms),
                e.event_kind.as_str(),
                e.recorded,
                e.outcome,
                e.decided_by.as_deref().unwrap_or("no rule")
            ));
        }
    }
    s
}

/// `konbini risk rules`: every stored rule, highest priority first.
pub fn rules(db: &Db) -> Result<(), String> {
    let rules = db
        .read_blocking(konbini_store::risk::rules)
        .map_err(|e| e.to_string())?;
    if rules.is_empty() {
        println!(
            "no rules stored yet: `konbini serve` stores the default rule set when it first starts"
        );
        return Ok(());
    }
    println!(
        "{:<32} {:>7} {:>8} {:<6} {:<8} updated by",
        "rule", "version", "priority", "mode", "state"
    );
    for r in &rules {
        println!(
            "{:<32} {:>7} {:>8} {:<6} {:<8} {} at {}",
            r.name,
            r.version,
            r.priority,
            r.mode,
            if r.enabled { "enabled" } else { "disabled" },
            r.updated_by,
            jst(r.updated_ms)
        );
        println!(
            "    {}",
            r.source.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    println!("{} rules", rules.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_days_in_jst_or_milliseconds() {
        // 2026-11-25 00:00 JST = 2026-11-24 15:00 UTC.
        assert_eq!(parse_bound("2026-11-25", false), Ok(1_795_532_400_000));
        assert_eq!(parse_bound("2026-11-25", true), Ok(1_795_618_800_000));
        assert_eq!(parse_bound("1795564800000", true), Ok(1_795_564_800_000));
        assert!(parse_bound("yesterday", false).is_err());
        assert!(parse_bound("", false).is_err());
        assert!(parse_bound("99999999999999999999", false).is_err());
    }

    #[test]
    fn times_print_in_jst() {
        assert_eq!(jst(1_795_532_400_000), "2026-11-25 00:00:00 JST");
        assert_eq!(jst(0), "1970-01-01 09:00:00 JST");
        assert_eq!(jst(1_795_564_800_000 + 61_000), "2026-11-25 09:01:01 JST");
    }
}
