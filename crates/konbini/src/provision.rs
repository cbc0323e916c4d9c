//! Provisioning and reporting commands, run against the database directly.

use konbini_server::secrets::{new_token, token_hash};
use konbini_store::ledger::VerifyReport;
use konbini_store::stores::{self, Store, Terminal};
use konbini_store::{Db, StoreError};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn valid_id(s: &str) -> Result<(), String> {
    if s.is_empty()
        || s.len() > 32
        || !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "'{s}' is not a valid id: use 1 to 32 of A-Z a-z 0-9 _ -"
        ));
    }
    Ok(())
}

/// Where a store is, in degrees (the risk engine's travel features use it).
#[derive(Debug, Clone, Copy)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

impl Location {
    /// Millionths of a degree, after checking the ranges.
    fn e6(self) -> Result<(i64, i64), String> {
        if !(-90.0..=90.0).contains(&self.lat) || !(-180.0..=180.0).contains(&self.lon) {
            return Err("latitude must be within ±90 and longitude within ±180 degrees".into());
        }
        Ok((
            (self.lat * 1e6).round() as i64,
            (self.lon * 1e6).round() as i64,
        ))
    }
}

pub fn add_store(
    db: &Db,
    id: &str,
    name: &str,
    region: &str,
    at: Option<Location>,
) -> Result<(), String> {
    valid_id(id)?;
    let coords = at.map(Location::e6).transpose()?;
    let s = Store {
        id: id.into(),
        name: name.into(),
        region: region.into(),
        created_ms: now_ms(),
        lat_e6: coords.map(|c| c.0),
        lon_e6: coords.map(|c| c.1),
    };
    db.write_blocking(move |c| {
        stores::insert_store(c, &s)?;
        let details = format!("{{\"region\":{:?}}}", s.region);
        konbini_store::audit::append(c, "cli", "store.added", &s.id, &details, s.created_ms)?;
        Ok::<_, StoreError>(())
    })
    .map_err(|e| match e {
        StoreError::Constraint(_) => format!("store {id} already exists"),
        other => other.to_string(),
    })?;
    println!("store {id} added");
    Ok(())
}

pub fn list_stores(db: &Db) -> Result<(), String> {
    let list = db
        .read_blocking(stores::list_stores)
        .map_err(|e| e.to_string())?;
    for s in list {
        println!("{}\t{}\t{}", s.id, s.region, s.name);
    }
    Ok(())
}

/// Adds a terminal; returns its id and its key (the key is stored only as a hash).
pub fn add_terminal(db: &Db, store_id: &str, label: &str) -> Result<(String, String), String> {
    let key = new_token("kt");
    let t = Terminal {
        id: konbini_server::secrets::new_id("term"),
        store_id: store_id.into(),
        key_hash: token_hash(&key),
        label: label.chars().take(64).collect(),
        status: "active".into(),
        created_ms: now_ms(),
    };
    let id = t.id.clone();
    let sid = store_id.to_string();
    db.write_blocking(move |c| {
        if stores::store_by_id(c, &sid)?.is_none() {
            return Ok(false);
        }
        stores::insert_terminal(c, &t)?;
        let details = format!("{{\"store_id\":{:?}}}", t.store_id);
        konbini_store::audit::append(c, "cli", "terminal.added", &t.id, &details, t.created_ms)?;
        Ok::<_, StoreError>(true)
    })
    .map_err(|e| e.to_string())?
    .then_some(())
    .ok_or_else(|| format!("no store {store_id}: add it first with `konbini store add`"))?;
    Ok((id, key))
}

pub fn revoke_terminal(db: &Db, id: &str) -> Result<(), String> {
    let id2 = id.to_string();
    if db
        .write_blocking(move |c| stores::revoke_terminal(c, &id2))
        .map_err(|e| e.to_string())?
    {
        println!("terminal {id} revoked");
        Ok(())
    } else {
        Err(format!("no active terminal {id}"))
    }
}

pub fn format_verify(r: &VerifyReport) -> String {
    let mut s = format!(
        "ledger verify: {} entries, {} postings, {} accounts checked\n",
        r.entries, r.postings, r.accounts
    );
    if r.ok() {
        s.push_str("OK: every entry balanced, every cached balance and hold equal to its postings, no wallet negative, every payment, top-up and refund has its entry");
    } else {
        s.push_str(&format!("FAILED: {} problem(s)\n", r.problems.len()));
        for p in &r.problems {
            s.push_str(&format!("  - {p}\n"));
        }
    }
    s
}

pub fn format_audit(r: &konbini_store::audit::ChainReport) -> String {
    let mut s = format!(
        "audit verify: {} records, head hash {}\n",
        r.records,
        konbini_core::encoding::hex(&r.head_hash)
    );
    if r.problems.is_empty() {
        s.push_str("OK: every record's hash matches its contents and the record before it (keep the head hash elsewhere to detect a truncated tail)");
    } else {
        s.push_str(&format!("FAILED: {} problem(s)\n", r.problems.len()));
        for p in &r.problems {
            s.push_str(&format!("  - {p}\n"));
        }
    }
    s
}

/// Parses YYYY-MM-DD into the JST business day's [start, end) in unix milliseconds.
pub fn jst_day(date: &str) -> Result<(i64, i64), String> {
    let bad = || format!("'{date}' is not a date of the form YYYY-MM-DD");
    let parts: Vec<&str> = date.split('-').collect();
    if parts.len() != 3 {
        return Err(bad());
    }
    let y: i64 = parts[0].parse().map_err(|_| bad())?;
    let m: i64 = parts[1].parse().map_err(|_| bad())?;
    let d: i64 = parts[2].parse().map_err(|_| bad())?;
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    // Days since the epoch (Howard Hinnant's days_from_civil).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let start = days * 86_400_000 - 9 * 3_600_000;
    Ok((start, start + 86_400_000))
}

pub fn settlement(db: &Db, date: &str) -> Result<(), String> {
    let (from, to) = jst_day(date)?;
    let lines = db
        .read_blocking(move |c| konbini_store::ledger::settlement(c, from, to))
        .map_err(|e| e.to_string())?;
    println!("settlement for {date} (JST)");
    println!(
        "{:<20} {:>4} {:>9} {:>14} {:>8} {:>14} {:>14}",
        "store", "cur", "payments", "gross", "refunds", "refunded", "net"
    );
    for l in &lines {
        println!(
            "{:<20} {:>4} {:>9} {:>14} {:>8} {:>14} {:>14}",
            l.store_id,
            l.currency,
            l.payments,
            l.payments_minor,
            l.refunds,
            l.refunds_minor,
            l.payments_minor - l.refunds_minor
        );
    }
    if lines.is_empty() {
        println!("(no payments or refunds that day)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn jst_days() {
        // 2026-11-25 00:00 JST = 2026-11-24 15:00 UTC.
        assert_eq!(
            super::jst_day("2026-11-25"),
            Ok((1_795_532_400_000, 1_795_618_800_000))
        );
        assert_eq!(
            super::jst_day("1970-01-01").map(|r| r.0),
            Ok(-9 * 3_600_000)
        );
        assert!(super::jst_day("2026-13-01").is_err());
        assert!(super::jst_day("yesterday").is_err());
    }
}
