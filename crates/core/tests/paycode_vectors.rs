//! Checks `docs/payment-codes.md` against the implementation: every row of its test-vector table
//! and every intermediate value of its worked example. If the document and the code disagree,
//! this test fails, so the published vectors can be trusted by other implementations.
//!
//! Besides calling the reference implementation, the test recomputes each code from the
//! document's own description (message bytes, dynamic truncation, Luhn), so a change to the
//! algorithm that is not reflected in the document is caught too.

use std::collections::BTreeMap;

use konbini_core::encoding::{hex, unhex};
use konbini_core::paycode::{
    CodeError, PaymentCode, derive_device_key, generate, hmac_sha256, step_of, verify,
};

const DOC: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/payment-codes.md"
));
const TABLE_HEADER: &str = "| key (hex) | slot | unix_ms | sub_index | code |";
const STEP_MS: i64 = 30_000;

#[derive(Debug)]
struct Vector {
    key: [u8; 32],
    slot: u32,
    unix_ms: i64,
    sub_index: u8,
    code: String,
}

fn key32(hex_str: &str) -> [u8; 32] {
    let bytes = unhex(hex_str).unwrap_or_else(|| panic!("not hex: {hex_str:?}"));
    bytes
        .try_into()
        .unwrap_or_else(|b: Vec<u8>| panic!("key must be 32 bytes, got {}", b.len()))
}

/// Parses the rows of the test-vector table (the lines after the header and its separator, up
/// to the first line that is not a table row).
fn vectors() -> Vec<Vector> {
    let lines: Vec<&str> = DOC.lines().map(str::trim).collect();
    let headers: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i] == TABLE_HEADER)
        .collect();
    assert_eq!(
        headers.len(),
        1,
        "the document must contain the vector table header exactly once"
    );
    let sep = lines[headers[0] + 1];
    assert!(
        sep.starts_with('|') && sep.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ')),
        "the header must be followed by a separator line, got {sep:?}"
    );
    lines[headers[0] + 2..]
        .iter()
        .take_while(|l| l.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 5, "row needs 5 cells: {line:?}");
            Vector {
                key: key32(cells[0]),
                slot: cells[1].parse().expect("slot"),
                unix_ms: cells[2].parse().expect("unix_ms"),
                sub_index: cells[3].parse().expect("sub_index"),
                code: cells[4].to_string(),
            }
        })
        .collect()
}

/// The labelled `name = value   # comment` lines of the worked example's text blocks, with the
/// comment dropped and all whitespace removed from the value.
fn worked_example() -> BTreeMap<String, String> {
    let start = DOC
        .find("## 10. Worked example")
        .expect("worked example section");
    let section = &DOC[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut values = BTreeMap::new();
    let mut in_block = false;
    for line in section.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        if !in_block {
            continue;
        }
        let content = line.split('#').next().unwrap_or("");
        let Some((name, value)) = content.split_once('=') else {
            continue;
        };
        let name = name.trim().to_string();
        let value: String = value.chars().filter(|c| !c.is_whitespace()).collect();
        if let Some(previous) = values.insert(name.clone(), value.clone()) {
            assert_eq!(previous, value, "{name} is given two different values");
        }
    }
    values
}

/// Luhn check digit written from section 4.1 of the document (independent of the crate's).
fn spec_luhn(body: &str) -> u32 {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, c)| {
            let d = u32::from(c - b'0');
            if i % 2 == 0 {
                let x = 2 * d;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    (10 - sum % 10) % 10
}

/// A code computed step by step as section 4 of the document describes it.
fn spec_code(key: &[u8; 32], slot: u32, unix_ms: i64, sub_index: u8) -> String {
    let step = unix_ms.div_euclid(STEP_MS);
    let mut message = b"KPC1".to_vec();
    message.extend_from_slice(&slot.to_be_bytes());
    message.extend_from_slice(&(step as u64).to_be_bytes());
    message.push(sub_index);
    assert_eq!(message.len(), 17);
    let mac = hmac_sha256(key, &[&message]);
    let offset = usize::from(mac[31] & 0x0f);
    let bin = u32::from_be_bytes([
        mac[offset],
        mac[offset + 1],
        mac[offset + 2],
        mac[offset + 3],
    ]) & 0x7fff_ffff;
    let body = format!("881{slot:08}{sub_index}{:07}", bin % 10_000_000);
    format!("{body}{}", spec_luhn(&body))
}

#[test]
fn table_has_enough_rows_and_covers_the_cases() {
    let v = vectors();
    assert!(
        v.len() >= 8,
        "only {} test vectors in the document",
        v.len()
    );
    let has = |f: &dyn Fn(&Vector) -> bool| v.iter().any(f);
    assert!(has(&|r| r.slot == 0), "no vector with slot 0");
    assert!(
        has(&|r| r.slot == 99_999_999),
        "no vector with slot 99999999"
    );
    assert!(has(&|r| r.sub_index == 0), "no vector with sub-index 0");
    assert!(has(&|r| r.sub_index == 9), "no vector with sub-index 9");
    assert!(has(&|r| r.key == [0u8; 32]), "no all-zero key");
    let seq: [u8; 32] = std::array::from_fn(|i| i as u8 + 1);
    assert!(has(&|r| r.key == seq), "no 0x01..0x20 key");
    let mut keys: Vec<[u8; 32]> = v.iter().map(|r| r.key).collect();
    keys.sort();
    keys.dedup();
    assert!(keys.len() >= 3, "fewer than 3 distinct keys");
    assert!(
        has(&|r| r.unix_ms % STEP_MS == 0),
        "no vector at a step boundary"
    );
    assert!(
        has(&|r| r.unix_ms % STEP_MS == STEP_MS - 1),
        "no vector just before a step boundary"
    );
}

#[test]
fn every_vector_matches_the_implementation() {
    let v = vectors();
    assert!(
        v.len() >= 8,
        "only {} test vectors in the document",
        v.len()
    );
    for r in &v {
        let step = step_of(r.unix_ms);
        assert_eq!(step, r.unix_ms.div_euclid(STEP_MS));
        let generated = generate(&r.key, r.slot, step, r.sub_index).to_string();
        assert_eq!(
            generated, r.code,
            "implementation disagrees with the doc for {r:?}"
        );
        assert_eq!(
            spec_code(&r.key, r.slot, r.unix_ms, r.sub_index),
            r.code,
            "the doc's own description disagrees with its vector {r:?}"
        );

        let parsed = PaymentCode::parse(&r.code)
            .unwrap_or_else(|e| panic!("vector {} does not parse: {e}", r.code));
        assert_eq!(parsed.slot(), r.slot);
        assert_eq!(parsed.sub_index(), r.sub_index);
        assert_eq!(parsed.to_string(), r.code);

        // Accepted during its own step and the next one only; the counter is step * 10 + d.
        let counter = step * 10 + i64::from(r.sub_index);
        let step_start = step * STEP_MS;
        let probes = [
            r.unix_ms,
            r.unix_ms + 29_999,
            r.unix_ms + 30_000,
            r.unix_ms + 59_999,
            r.unix_ms + 60_000,
            step_start - 1,
            step_start,
            step_start + 29_999,
            step_start + 30_000,
            step_start + 59_999,
            step_start + 60_000,
            step_start - STEP_MS,
        ];
        for now_ms in probes {
            let age = step_of(now_ms) - step;
            let expected = if age == 0 || age == 1 {
                Ok(counter)
            } else {
                Err(CodeError::Mismatch)
            };
            assert_eq!(
                verify(&r.key, &parsed, now_ms),
                expected,
                "code {} checked at {now_ms} ({age} steps after its own)",
                r.code
            );
        }
        // Spelled out: valid when made and 29.999 s later (always own or next step), dead two
        // steps later.
        assert_eq!(verify(&r.key, &parsed, r.unix_ms), Ok(counter));
        assert_eq!(verify(&r.key, &parsed, r.unix_ms + 29_999), Ok(counter));
        assert!(verify(&r.key, &parsed, step_start + 2 * STEP_MS).is_err());
        assert!(verify(&r.key, &parsed, r.unix_ms + 2 * STEP_MS).is_err());

        // The check digit catches every single-digit error.
        for pos in 0..r.code.len() {
            for delta in 1..10u8 {
                let mut b = r.code.clone().into_bytes();
                b[pos] = b'0' + (b[pos] - b'0' + delta) % 10;
                let typo = String::from_utf8(b).expect("ascii");
                assert!(PaymentCode::parse(&typo).is_err(), "typo {typo} accepted");
            }
        }
    }
}

#[test]
fn worked_example_intermediate_values() {
    let w = worked_example();
    let get = |name: &str| -> &str {
        w.get(name)
            .unwrap_or_else(|| panic!("worked example lacks `{name} = ...`"))
    };

    // Key derivation (server side).
    let master = unhex(get("master_secret")).expect("master_secret hex");
    let slot: u32 = get("slot").parse().expect("slot");
    let generation: u32 = get("generation").parse().expect("generation");
    let mut key_message = b"konbini/paycode-key/v1".to_vec();
    key_message.extend_from_slice(&slot.to_be_bytes());
    key_message.extend_from_slice(&generation.to_be_bytes());
    assert_eq!(get("key_message"), hex(&key_message));
    let device_key = derive_device_key(&master, slot, generation);
    assert_eq!(get("device_key"), hex(&device_key));
    assert_eq!(hmac_sha256(&master, &[&key_message]), device_key);

    // Code generation (phone side).
    let unix_ms: i64 = get("unix_ms").parse().expect("unix_ms");
    let sub_index: u8 = get("sub_index").parse().expect("sub_index");
    let step = step_of(unix_ms);
    assert_eq!(get("step"), step.to_string());
    let mut message = b"KPC1".to_vec();
    message.extend_from_slice(&slot.to_be_bytes());
    message.extend_from_slice(&(step as u64).to_be_bytes());
    message.push(sub_index);
    assert_eq!(get("message"), hex(&message));
    let mac = hmac_sha256(&device_key, &[&message]);
    assert_eq!(get("hmac"), hex(&mac));
    let offset = usize::from(mac[31] & 0x0f);
    assert_eq!(get("offset"), offset.to_string());
    let window = &mac[offset..offset + 4];
    assert_eq!(get("window"), hex(window));
    let int31 = u32::from_be_bytes([window[0], window[1], window[2], window[3]]) & 0x7fff_ffff;
    assert_eq!(get("int31"), int31.to_string());
    let otp = format!("{:07}", int31 % 10_000_000);
    assert_eq!(get("otp"), otp);
    let body = format!("881{slot:08}{sub_index}{otp}");
    assert_eq!(get("body"), body);
    assert_eq!(get("check"), spec_luhn(&body).to_string());
    let code = generate(&device_key, slot, step, sub_index).to_string();
    assert_eq!(code, format!("{body}{}", spec_luhn(&body)));
    assert_eq!(get("code"), code);
    assert_eq!(
        get("counter"),
        (step * 10 + i64::from(sub_index)).to_string()
    );
    let parsed = PaymentCode::parse(&code).expect("worked example parses");
    assert_eq!(
        verify(&device_key, &parsed, unix_ms),
        Ok(step * 10 + i64::from(sub_index))
    );

    // The worked example is also one of the table's vectors.
    assert!(
        vectors().iter().any(|r| r.key == device_key
            && r.slot == slot
            && r.unix_ms == unix_ms
            && r.sub_index == sub_index
            && r.code == code),
        "the worked example is missing from the vector table"
    );
}
