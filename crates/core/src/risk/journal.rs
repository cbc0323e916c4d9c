//! The journal form of [`Features`]: a JSON object from feature name to value.
//!
//! ```json
//! {
//!   "event.kind": "payment",
//!   "account.age": 259200000,
//!   "customer.tier": "new",
//!   "customer.recovery_hold": false,
//!   "payment.amount": 730000,
//!   "topups.count": [6, 6, 6, 6],
//!   "device.payments.count(1h)": 2,
//!   "basket.lines": 1,
//!   "basket.quantity(\"e_cigarette\")": 150,
//!   "basket.amount(\"e_cigarette\")": 730000
//! }
//! ```
//!
//! * A key is the feature exactly as a rule writes it, in its canonical form: the window as
//!   `10m`, `1h`, `24h` or `7d` (not `60m`), the category in double quotes
//!   (`basket.quantity("tobacco")`, which JSON escapes as `"basket.quantity(\"tobacco\")"`).
//! * A value is a JSON integer for numbers (money in minor units, durations in milliseconds,
//!   counts, plain integers), `true`/`false` for booleans and the value's name for strings
//!   (`"established"`, `"topup"`).
//! * **A window feature known in every window is written once**, under its bare name, as an
//!   array in window order `10m`, `1h`, `24h`, `7d`: `"topups.count": [6, 6, 6, 6]` is
//!   `topups.count(10m)` = 6, …, `topups.count(7d)` = 6. The engine always knows all four,
//!   so this is the form a decision's counters take: a payment journals 16 window features
//!   in 4 keys, about a third of the bytes of one key per window. A window feature known in
//!   only some windows is written per window, as a rule writes it (`"topups.count(1h)": 6`).
//! * A feature that is not set is not written: it stays unknown when read back.
//! * **The basket is written sparsely.** When `basket.lines` is present, a basket category
//!   that is not listed holds 0 (the basket has none of it); only categories in the basket
//!   appear. A category written as `null` is unknown (this arises only if the engine set
//!   `basket.lines` without the basket itself). Without `basket.lines`, categories are listed
//!   like any other feature.
//!
//! [`Features::to_json`] and [`Features::from_json`] round-trip exactly; `Features` also
//! implements `Serialize` and `Deserialize` with this form.

use std::fmt;

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::catalogue::{
    self, ArgKind, Category, CountFeature, FeatureDef, FeatureKey, SLOTS, Ty, Window,
};
use super::eval::Features;

fn is_basket(def: &FeatureDef) -> bool {
    matches!(def.key, FeatureKey::Basket(_))
}

fn bit(slot: usize) -> u128 {
    u32::try_from(slot)
        .ok()
        .and_then(|s| 1u128.checked_shl(s))
        .unwrap_or(0)
}

/// One entry of the journal form: a feature value, or `null` for an unknown basket category
/// of a sparse basket.
#[derive(Clone, Copy)]
enum Entry {
    Null,
    Bool(bool),
    Str(&'static str),
    Int(i64),
    /// A window feature known in every window, in [`Window::ALL`] order.
    Windows([i64; WINDOWS]),
}

const WINDOWS: usize = Window::ALL.len();

impl From<Entry> for Json {
    fn from(e: Entry) -> Json {
        match e {
            Entry::Null => Json::Null,
            Entry::Bool(b) => Json::Bool(b),
            Entry::Str(s) => Json::String(s.to_string()),
            Entry::Int(n) => Json::from(n),
            Entry::Windows(v) => Json::Array(v.iter().map(|n| Json::from(*n)).collect()),
        }
    }
}

impl Serialize for Entry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Entry::Null => s.serialize_none(),
            Entry::Bool(b) => s.serialize_bool(b),
            Entry::Str(v) => s.serialize_str(v),
            Entry::Int(n) => s.serialize_i64(n),
            Entry::Windows(v) => v.serialize(s),
        }
    }
}

/// A journal key, written without building a `String` first: the feature with its argument
/// index, or `None` for the feature's bare name (no argument, or every window at once).
struct Key(&'static FeatureDef, Option<usize>);

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Key(def, arg) = *self;
        match (def.arg(), arg) {
            (ArgKind::None, _) | (_, None) => f.write_str(def.name),
            (ArgKind::Window, Some(a)) => write!(
                f,
                "{}({})",
                def.name,
                Window::NAMES.get(a).copied().unwrap_or("?")
            ),
            (ArgKind::Category, Some(a)) => write!(
                f,
                "{}(\"{}\")",
                def.name,
                Category::NAMES.get(a).copied().unwrap_or("?")
            ),
        }
    }
}

impl Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.0.arg(), self.1) {
            (ArgKind::None, _) | (_, None) => s.serialize_str(self.0.name),
            _ => s.collect_str(self),
        }
    }
}

impl Features {
    /// Calls `f` with every entry of the journal form, in catalogue order.
    fn each_journal_entry<E>(
        &self,
        mut f: impl FnMut(Key, Entry) -> Result<(), E>,
    ) -> Result<(), E> {
        let sparse_basket = self
            .get(catalogue::count_slot(CountFeature::BasketLines))
            .is_some();
        for def in catalogue::catalogue() {
            match def.arg() {
                ArgKind::None => {
                    if let Some(v) = self.get(catalogue::slot(def.key, 0)) {
                        f(Key(def, None), encode(def, v))?;
                    }
                }
                ArgKind::Window => {
                    let values: [Option<i64>; WINDOWS] =
                        std::array::from_fn(|w| self.get(catalogue::slot(def.key, w)));
                    if values.iter().all(Option::is_some) {
                        f(
                            Key(def, None),
                            Entry::Windows(values.map(Option::unwrap_or_default)),
                        )?;
                    } else {
                        for (w, v) in values.iter().enumerate() {
                            if let Some(v) = v {
                                f(Key(def, Some(w)), encode(def, *v))?;
                            }
                        }
                    }
                }
                ArgKind::Category => {
                    for c in 0..Category::ALL.len() {
                        let entry = match self.get(catalogue::slot(def.key, c)) {
                            None if sparse_basket && is_basket(def) => Entry::Null,
                            None => continue,
                            Some(0) if sparse_basket && is_basket(def) => continue,
                            Some(v) => encode(def, v),
                        };
                        f(Key(def, Some(c)), entry)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The journal form: a JSON object of every known feature, keyed as rules write it
    /// (`"topups.count(1h)"`, `"basket.quantity(\"tobacco\")"`), with integers for numbers
    /// (yen, milliseconds, counts), booleans, and value names for strings. Unknown features
    /// are left out. A window feature known in every window is one key holding an array in
    /// window order (`"topups.count": [1, 6, 6, 6]`). When `basket.lines` is known the
    /// basket is sparse: categories not listed are 0 (and a category that is unknown is
    /// written `null`). Serializing `Features` with
    /// serde writes the same object without building this value first (about twice as fast).
    ///
    /// ```
    /// use konbini_core::risk::{Category, Features, Window, WindowCounter};
    /// let mut f = Features::new();
    /// f.set_window(WindowCounter::TopupsCount, Window::Hour1, 6)
    ///     .add_basket_line(Category::ECigarette, 150, 730_000);
    /// let json = f.to_json();
    /// assert_eq!(json["topups.count(1h)"], 6);
    /// assert_eq!(json["basket.quantity(\"e_cigarette\")"], 150);
    /// assert!(json.get("basket.quantity(\"food\")").is_none(), "zero: not in the basket");
    /// assert_eq!(Features::from_json(&json), Ok(f));
    /// ```
    pub fn to_json(&self) -> Json {
        let mut map = Map::new();
        let _ = self.each_journal_entry(|k, e| {
            map.insert(k.to_string(), e.into());
            Ok::<(), std::convert::Infallible>(())
        });
        Json::Object(map)
    }

    /// The journal form as JSON text, exactly what `serde_json::to_string` makes of these
    /// features, written straight into one string: the payment's hot path journals every
    /// decision, and the general serializer cost a tenth of the engine's work per payment
    /// (counted with callgrind). Every key and name comes from the catalogue, whose names
    /// need no JSON escaping (a test checks every one); the category keys' own quotes are
    /// written escaped.
    pub fn journal_string(&self) -> String {
        let mut out = String::with_capacity(640);
        let mut ints = itoa::Buffer::new();
        out.push('{');
        let _ = self.each_journal_entry(|Key(def, arg), entry| {
            if out.len() > 1 {
                out.push(',');
            }
            out.push('"');
            out.push_str(def.name);
            match (def.arg(), arg) {
                (ArgKind::None, _) | (_, None) => {}
                (ArgKind::Window, Some(a)) => {
                    out.push('(');
                    out.push_str(Window::NAMES.get(a).copied().unwrap_or("?"));
                    out.push(')');
                }
                (ArgKind::Category, Some(a)) => {
                    out.push_str("(\\\"");
                    out.push_str(Category::NAMES.get(a).copied().unwrap_or("?"));
                    out.push_str("\\\")");
                }
            }
            out.push_str("\":");
            match entry {
                Entry::Null => out.push_str("null"),
                Entry::Bool(b) => out.push_str(if b { "true" } else { "false" }),
                Entry::Str(v) => {
                    out.push('"');
                    out.push_str(v);
                    out.push('"');
                }
                Entry::Int(n) => out.push_str(ints.format(n)),
                Entry::Windows(v) => {
                    out.push('[');
                    for (i, n) in v.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(ints.format(*n));
                    }
                    out.push(']');
                }
            }
            Ok::<(), std::convert::Infallible>(())
        });
        out.push('}');
        out
    }

    /// Reads the journal form written by [`Features::to_json`].
    ///
    /// Refuses anything that is not such an object: a key that is not a feature of the
    /// catalogue in canonical form, a value of the wrong type (a fraction, a number beyond
    /// 64 bits, a string a feature never holds). The error names the key.
    pub fn from_json(v: &Json) -> Result<Features, String> {
        let Json::Object(map) = v else {
            return Err("features must be a JSON object of feature name to value".into());
        };
        let mut f = Features::new();
        let mut listed: u128 = 0;
        for (key, value) in map {
            let (def, arg) = parse_key(key)?;
            let Some(arg) = arg else {
                // Every window at once: `"payments.count": [10m, 1h, 24h, 7d]`.
                let values = match value.as_array() {
                    Some(a) if a.len() == WINDOWS => a,
                    _ => {
                        return Err(format!(
                            "feature `{key}`: expected an array of {WINDOWS} whole numbers (windows {}), found {value}",
                            Window::NAMES.join(", ")
                        ));
                    }
                };
                for (w, v) in values.iter().enumerate() {
                    let n = decode(def, v).map_err(|e| format!("feature `{key}`: {e}"))?;
                    let slot = catalogue::slot(def.key, w);
                    listed |= bit(slot);
                    f.put(slot, n);
                }
                continue;
            };
            let slot = catalogue::slot(def.key, arg);
            listed |= bit(slot);
            if value.is_null() {
                continue;
            }
            let n = decode(def, value).map_err(|e| format!("feature `{key}`: {e}"))?;
            f.put(slot, n);
        }
        if f.get(catalogue::count_slot(CountFeature::BasketLines))
            .is_some()
        {
            for (slot, def, _) in catalogue::slot_owners() {
                if is_basket(def) && listed & bit(slot) == 0 {
                    f.put(slot, 0);
                }
            }
        }
        Ok(f)
    }
}

fn encode(def: &FeatureDef, v: i64) -> Entry {
    match def.ty() {
        Ty::Bool => Entry::Bool(v != 0),
        Ty::Str => match usize::try_from(v).ok().and_then(|i| def.values().get(i)) {
            Some(s) => Entry::Str(s),
            // The typed setters store only valid codes; keep anything else as a number.
            None => Entry::Int(v),
        },
        Ty::Int | Ty::Money | Ty::Duration | Ty::Count => Entry::Int(v),
    }
}

fn decode(def: &FeatureDef, value: &Json) -> Result<i64, String> {
    match def.ty() {
        Ty::Bool => value
            .as_bool()
            .map(i64::from)
            .ok_or_else(|| format!("expected true or false, found {value}")),
        Ty::Str => {
            let s = value.as_str().ok_or_else(|| {
                format!("expected one of {}, found {value}", def.values().join(", "))
            })?;
            def.values()
                .iter()
                .position(|v| *v == s)
                .and_then(|i| i64::try_from(i).ok())
                .ok_or_else(|| format!("\"{s}\" is not one of {}", def.values().join(", ")))
        }
        Ty::Int | Ty::Money | Ty::Duration | Ty::Count => value
            .as_i64()
            .ok_or_else(|| format!("expected a whole number within 64 bits, found {value}")),
    }
}

/// The catalogue entry and argument index of a journal key such as `topups.count(1h)`;
/// `None` for a window feature's bare name (every window at once).
fn parse_key(key: &str) -> Result<(&'static FeatureDef, Option<usize>), String> {
    let unknown = || format!("`{key}` is not a feature as rules write it");
    let (name, arg) = match key.split_once('(') {
        Some((name, rest)) => (name, Some(rest.strip_suffix(')').ok_or_else(unknown)?)),
        None => (key, None),
    };
    let def = catalogue::feature(name).ok_or_else(unknown)?;
    let index = match (def.arg(), arg) {
        (ArgKind::None, None) => Some(Some(0)),
        (ArgKind::Window, None) => Some(None),
        (ArgKind::Window, Some(w)) => Window::parse(w).map(|w| Some(w.index())),
        (ArgKind::Category, Some(c)) => c
            .strip_prefix('"')
            .and_then(|c| c.strip_suffix('"'))
            .and_then(Category::parse)
            .map(|c| Some(c.index())),
        _ => None,
    };
    index.map(|i| (def, i)).ok_or_else(unknown)
}

// Every slot is addressable by a `u128` bit.
const _: () = assert!(SLOTS <= 128);

/// Serialized in the journal form of [`Features::to_json`].
impl Serialize for Features {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        self.each_journal_entry(|key, entry| map.serialize_entry(&key, &entry))?;
        map.end()
    }
}

/// Read from the journal form, as [`Features::from_json`] does.
impl<'de> Deserialize<'de> for Features {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Json::deserialize(d)?;
        Features::from_json(&v).map_err(serde::de::Error::custom)
    }
}

/// The version byte that starts [`Features::journal_bytes`]. Version 1 (no second mask,
/// every known value written) is still read.
const PACKED_VERSION: u8 = 2;

impl Features {
    /// The packed journal form, what a payment's row keeps (`payments.risk_features`): the
    /// same features as [`Features::journal_string`] in about a seventh of the bytes, written
    /// in a tenth of the time (the payment's hot path journals every decision).
    ///
    /// * byte 0: the format version, 2;
    /// * bytes 1–16: which catalogue slots are known, a 128-bit little-endian mask;
    /// * bytes 17–32: which of those are not zero, a mask of the same form;
    /// * then each known non-zero slot's value in slot order, zigzag-encoded LEB128 (a small
    ///   number, positive or negative, takes one byte).
    ///
    /// A payment knows about 65 slots and half of them are zero (the basket's other
    /// categories, windows without payments): the second mask costs 16 bytes and saves more
    /// than that (measured on a bench database: 113 → 98 bytes a payment), which every
    /// payment row and, on PostgreSQL, its WAL carry.
    ///
    /// A slot is a feature with its argument (a window, a category) in catalogue order, so
    /// the catalogue only ever grows at its end: a unit test pins every slot in use.
    /// [`Features::from_journal_bytes`] reads it back exactly.
    pub fn journal_bytes(&self) -> Vec<u8> {
        let known = self.known_mask();
        let mut non_zero = 0u128;
        for slot in known_slots(known) {
            if self.get(slot).is_some_and(|v| v != 0) {
                non_zero |= 1 << slot;
            }
        }
        // Room for the longest form, on the stack; the result is copied out once.
        let mut buf = [0u8; 33 + 10 * SLOTS];
        let mut n = 0;
        let head = std::iter::once(PACKED_VERSION)
            .chain(known.to_le_bytes())
            .chain(non_zero.to_le_bytes());
        for (b, v) in buf.iter_mut().zip(head) {
            *b = v;
            n += 1;
        }
        for slot in known_slots(non_zero) {
            if let Some(v) = self.get(slot) {
                n = crate::encoding::put_zigzag_at(&mut buf, n, v);
            }
        }
        buf.get(..n).unwrap_or(&buf).to_vec()
    }

    /// Reads [`Features::journal_bytes`] (and version 1, which had no second mask). Refuses
    /// another version, a slot this build does not know, a non-zero mark on an unknown slot
    /// or on a value of zero, a truncated or overlong value and trailing bytes.
    pub fn from_journal_bytes(bytes: &[u8]) -> Result<Features, String> {
        let (version, rest) = match bytes.split_first() {
            Some((&v @ (1 | PACKED_VERSION), rest)) => (v, rest),
            _ => return Err("not a packed journal line of version 1 or 2".into()),
        };
        let Some((mask, rest)) = rest.split_first_chunk::<16>() else {
            return Err("a packed journal line shorter than its mask".into());
        };
        let known = u128::from_le_bytes(*mask);
        let (non_zero, mut rest) = if version == 1 {
            (known, rest)
        } else {
            let Some((mask, rest)) = rest.split_first_chunk::<16>() else {
                return Err("a packed journal line shorter than its masks".into());
            };
            (u128::from_le_bytes(*mask), rest)
        };
        if known_slots(known).any(|slot| slot >= SLOTS) {
            return Err("a packed journal line with a feature this version does not know".into());
        }
        if non_zero & !known != 0 {
            return Err("a packed journal line with a value for an unknown feature".into());
        }
        let mut f = Features::new();
        for slot in known_slots(known) {
            let v = if non_zero & (1 << slot) == 0 {
                0
            } else {
                let v = crate::encoding::take_zigzag(&mut rest)
                    .map_err(|e| format!("a packed journal line: {e}"))?;
                if v == 0 && version != 1 {
                    return Err("a packed journal line with a zero marked non-zero".into());
                }
                v
            };
            f.put(slot, v);
        }
        if !rest.is_empty() {
            return Err("trailing bytes after a packed journal line".into());
        }
        Ok(f)
    }
}

/// The slots set in `known`, ascending.
fn known_slots(mut known: u128) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if known == 0 {
            return None;
        }
        let slot = known.trailing_zeros();
        known &= known - 1;
        usize::try_from(slot).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::{DurationFeature, EventKind, MoneyFeature, Tier, WindowCounter};
    use serde_json::json;

    #[test]
    fn the_form_is_readable() {
        let mut f = Features::new();
        f.set_event_kind(EventKind::Payment)
            .set_tier(Tier::New)
            .set_recovery_hold(false)
            .set_duration(DurationFeature::AccountAge, 259_200_000)
            .set_money(MoneyFeature::PaymentAmount, 730_000)
            .set_window(WindowCounter::TopupsCount, Window::Hour1, 6)
            .add_basket_line(Category::ECigarette, 150, 730_000);
        let want = json!({
            "event.kind": "payment",
            "account.age": 259_200_000,
            "customer.tier": "new",
            "customer.recovery_hold": false,
            "payment.amount": 730_000,
            "topups.count(1h)": 6,
            "basket.lines": 1,
            "basket.quantity(\"e_cigarette\")": 150,
            "basket.amount(\"e_cigarette\")": 730_000,
        });
        assert_eq!(f.to_json(), want);
        assert_eq!(Features::from_json(&want), Ok(f.clone()));
        assert_eq!(serde_json::to_value(&f).unwrap(), want);
        assert_eq!(serde_json::from_value::<Features>(want).unwrap(), f);
        assert_eq!(Features::new().to_json(), json!({}));
    }

    /// `journal_string` writes names as they are: none may need escaping in JSON.
    #[test]
    fn every_name_the_journal_writes_is_plain_json_text() {
        let plain = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
        };
        let mut names: Vec<&str> = Window::NAMES
            .iter()
            .chain(Category::NAMES)
            .copied()
            .collect();
        for def in catalogue::catalogue() {
            names.push(def.name);
            names.extend(def.values());
        }
        for n in names {
            assert!(plain(n), "{n:?} would need escaping");
        }
        // A set with every kind of entry: serde's text, byte for byte.
        let mut f = Features::new();
        f.set_event_kind(EventKind::Payment)
            .set_recovery_hold(true)
            .set_money(MoneyFeature::PaymentAmount, -7)
            .set_window(WindowCounter::TopupsCount, Window::Hour1, i64::MAX)
            .add_basket_line(Category::ECigarette, 150, 730_000);
        for (w, n) in Window::ALL.iter().zip([1, 2, 3, i64::MIN]) {
            f.set_window(WindowCounter::StorePaymentsCount, *w, n);
        }
        assert_eq!(f.journal_string(), serde_json::to_string(&f).unwrap());
        assert_eq!(Features::new().journal_string(), "{}");
    }

    /// The packed form names features by catalogue slot: stored journal lines are read with
    /// the slots of the build that reads them, so a slot, once used, keeps its feature. A new
    /// feature, window or category goes after every slot listed here (then add it here).
    #[test]
    fn the_packed_journal_slots_only_grow() {
        let pinned = include_str!("journal_slots.txt");
        let mut now: Vec<(usize, String)> = catalogue::slot_owners()
            .map(|(slot, def, arg)| (slot, super::super::eval::slot_name(def, arg)))
            .collect();
        now.sort();
        let now: Vec<String> = now.into_iter().map(|(s, n)| format!("{s} {n}")).collect();
        for (i, line) in pinned.lines().enumerate() {
            assert_eq!(
                now.get(i).map(String::as_str),
                Some(line),
                "slot {i} changed"
            );
        }
        assert_eq!(
            now.len(),
            pinned.lines().count(),
            "list the new slots in journal_slots.txt"
        );
    }

    #[test]
    fn packed_journal_lines_round_trip_and_refuse_damage() {
        let mut f = Features::new();
        f.set_event_kind(EventKind::Payment)
            .set_recovery_hold(true)
            .set_money(MoneyFeature::PaymentAmount, -7)
            .set_window(WindowCounter::TopupsCount, Window::Hour1, i64::MAX)
            .set_window(WindowCounter::TopupsCount, Window::Minutes10, i64::MIN)
            .add_basket_line(Category::ECigarette, 150, 730_000);
        let packed = f.journal_bytes();
        assert_eq!(Features::from_journal_bytes(&packed), Ok(f.clone()));
        assert_eq!(
            Features::from_journal_bytes(&Features::new().journal_bytes()),
            Ok(Features::new())
        );
        // The version, the masks, then a byte for a small value; a zero takes none.
        let mut one = Features::new();
        one.set_event_kind(EventKind::Payment);
        assert_eq!(one.journal_bytes().len(), 1 + 32 + 1);
        let mut zero = Features::new();
        zero.set_money(MoneyFeature::PaymentAmount, 0);
        assert_eq!(zero.journal_bytes().len(), 1 + 32);
        assert_eq!(
            Features::from_journal_bytes(&zero.journal_bytes()),
            Ok(zero)
        );
        assert!(packed.len() * 3 < f.journal_string().len());
        // Version 1 (every known value written, no second mask) still reads.
        let mut v1 = vec![1];
        v1.extend_from_slice(&one.known_mask().to_le_bytes());
        v1.extend(&one.journal_bytes()[33..]);
        assert_eq!(Features::from_journal_bytes(&v1), Ok(one.clone()));
        let refused = |b: &[u8]| Features::from_journal_bytes(b).is_err();
        assert!(refused(&[]));
        assert!(refused(&[3; 40]), "another version");
        assert!(refused(&packed[..10]), "cut in the mask");
        assert!(refused(&packed[..25]), "cut in the second mask");
        assert!(refused(&packed[..packed.len() - 1]), "cut in a value");
        let mut trailing = packed.clone();
        trailing.push(0);
        assert!(refused(&trailing));
        let with_masks = |known: u128, non_zero: u128, values: &[u8]| {
            let mut b = vec![2];
            b.extend_from_slice(&known.to_le_bytes());
            b.extend_from_slice(&non_zero.to_le_bytes());
            b.extend_from_slice(values);
            b
        };
        assert!(
            refused(&with_masks(1 << 127, 0, &[])),
            "a slot this build does not know"
        );
        assert!(
            refused(&with_masks(1, 2, &[2])),
            "a value for an unknown slot"
        );
        assert!(refused(&with_masks(1, 1, &[0])), "a zero marked non-zero");
        assert_eq!(
            Features::from_journal_bytes(&with_masks(1, 1, &[2])).map(|f| f.known_mask()),
            Ok(1)
        );
        let mut overlong = with_masks(1, 1, &[0xff; 10]);
        overlong.push(0x01);
        assert!(refused(&overlong), "more than 64 bits");
    }

    #[test]
    fn a_window_feature_known_in_every_window_is_one_array() {
        let mut f = Features::new();
        for (w, n) in Window::ALL.iter().zip([1, 2, 3, 4]) {
            f.set_window(WindowCounter::StorePaymentsCount, *w, n);
        }
        f.set_window(WindowCounter::TopupsSum, Window::Hours24, 9_000);
        let want = json!({
            "topups.sum(24h)": 9_000,
            "store.payments.count": [1, 2, 3, 4],
        });
        assert_eq!(f.to_json(), want);
        assert_eq!(serde_json::to_value(&f).unwrap(), want);
        assert_eq!(Features::from_json(&want), Ok(f.clone()));
        assert_eq!(serde_json::from_value::<Features>(want).unwrap(), f);
        // The per-window form of the same values reads back the same.
        let long = json!({
            "topups.sum(24h)": 9_000,
            "store.payments.count(10m)": 1,
            "store.payments.count(1h)": 2,
            "store.payments.count(24h)": 3,
            "store.payments.count(7d)": 4,
        });
        assert_eq!(Features::from_json(&long), Ok(f));
    }

    #[test]
    fn a_basket_line_count_without_a_basket_keeps_categories_unknown() {
        let mut f = Features::new();
        f.set_count(CountFeature::BasketLines, 2);
        let j = f.to_json();
        assert_eq!(j["basket.lines"], 2);
        assert!(j["basket.quantity(\"tobacco\")"].is_null());
        assert_eq!(
            j.as_object().map(|m| m.len()),
            Some(1 + 2 * Category::ALL.len())
        );
        assert_eq!(Features::from_json(&j), Ok(f));
    }

    #[test]
    fn bad_input_is_refused_with_the_key() {
        let cases = [
            (
                json!([]),
                "features must be a JSON object of feature name to value",
            ),
            (
                json!({"payment.amont": 1}),
                "`payment.amont` is not a feature as rules write it",
            ),
            (
                json!({"topups.count": 1}),
                "feature `topups.count`: expected an array of 4 whole numbers (windows 10m, 1h, 24h, 7d), found 1",
            ),
            (
                json!({"topups.count": [1, 2, 3]}),
                "feature `topups.count`: expected an array of 4 whole numbers (windows 10m, 1h, 24h, 7d), found [1,2,3]",
            ),
            (
                json!({"topups.count": [1, 2, 3, 4.5]}),
                "feature `topups.count`: expected a whole number within 64 bits, found 4.5",
            ),
            (
                json!({"payment.amount": [1, 2, 3, 4]}),
                "feature `payment.amount`: expected a whole number within 64 bits, found [1,2,3,4]",
            ),
            (
                json!({"topups.count(60m)": 1}),
                "`topups.count(60m)` is not a feature as rules write it",
            ),
            (
                json!({"payment.amount(1h)": 1}),
                "`payment.amount(1h)` is not a feature as rules write it",
            ),
            (
                json!({"basket.quantity(tobacco)": 1}),
                "`basket.quantity(tobacco)` is not a feature as rules write it",
            ),
            (
                json!({"basket.quantity(\"tobacco\"": 1}),
                "`basket.quantity(\"tobacco\"` is not a feature as rules write it",
            ),
            (
                json!({"payment.amount": 1.5}),
                "feature `payment.amount`: expected a whole number within 64 bits, found 1.5",
            ),
            (
                json!({"payment.amount": u64::MAX}),
                "feature `payment.amount`: expected a whole number within 64 bits, found 18446744073709551615",
            ),
            (
                json!({"payment.amount": "1"}),
                "feature `payment.amount`: expected a whole number within 64 bits, found \"1\"",
            ),
            (
                json!({"customer.tier": "gold"}),
                "feature `customer.tier`: \"gold\" is not one of new, verified, established",
            ),
            (
                json!({"customer.tier": 1}),
                "feature `customer.tier`: expected one of new, verified, established, found 1",
            ),
            (
                json!({"customer.recovery_hold": 1}),
                "feature `customer.recovery_hold`: expected true or false, found 1",
            ),
        ];
        for (v, want) in cases {
            assert_eq!(Features::from_json(&v), Err(want.to_string()), "{v}");
        }
        // `null` is an unknown feature, like a missing key.
        assert_eq!(
            Features::from_json(&json!({"payment.amount": null})),
            Ok(Features::new())
        );
        let extremes = json!({"payment.amount": i64::MIN, "travel.km": i64::MAX});
        assert_eq!(Features::from_json(&extremes).unwrap().to_json(), extremes);
    }
}
