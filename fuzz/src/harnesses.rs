//! Fuzz harnesses (bolero) for every decoder that takes bytes from outside:
//! CloudEvents bodies, quantities, gRPC batches, the WIT decimal bridge,
//! ERP answers read by the bundled mappers, configuration files and the
//! event log's stored records.
//!
//! Under `cargo test` each harness replays its committed corpus
//! (`__fuzz__/harnesses__<harness>/corpus` and `crashes` next to this file) and
//! nothing else, so CI is deterministic. Campaigns are run by hand, coverage
//! guided (`cargo bolero test`) or random (`BOLERO_RANDOM_ITERATIONS`); see
//! TESTING.md for the commands and what each campaign ran.
//!
//! Every harness checks properties, not only the absence of panics: what is
//! accepted is what was sent, what is refused names the field the sender
//! used, conversions are exact both ways.

use bolero::check;
use chrono::{DateTime, TimeZone, Utc};
use prost::Message;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::OnceLock;
use tollgate::ingest::{self, ValidEvent, cloudevents};
use tollgate::money::{self, MAX_INTEGER_DIGITS, MAX_SCALE, Quantity};
use tollgate::proto::{IngestRequest, UsageEvent};

/// Replays of the committed corpus only under `cargo test` (no random
/// cases unless `BOLERO_RANDOM_ITERATIONS` asks for them).
macro_rules! harness {
    () => {
        check!().with_iterations(0)
    };
}

/// The instant validation compares event times to (fixed: replays are
/// deterministic).
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 15, 12, 0, 0).unwrap()
}

/// The attributes a CloudEvents producer can send (and so the only names a
/// rejection may use).
fn is_cloudevents_attribute(field: &str) -> bool {
    matches!(
        field,
        "event"
            | "specversion"
            | "id"
            | "source"
            | "type"
            | "subject"
            | "time"
            | "datacontenttype"
            | "data"
            | "revision"
            | "retract"
    ) || field.starts_with("data.")
}

fn usage_event_field(field: &str) -> bool {
    matches!(field, "id" | "customer" | "source" | "meter" | "time" | "quantity" | "revision" | "dimensions")
        || field.starts_with("dimensions.")
}

/// The CloudEvent that carries `e` (as a producer would send it).
fn as_cloudevent(e: &tollgate::eventlog::StoredEvent) -> Value {
    json!({
        "specversion": "1.0",
        "id": e.id,
        "source": e.source,
        "type": e.meter,
        "subject": e.customer,
        "time": e.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "revision": e.revision,
        "data": { "quantity": e.quantity.to_string(), "dimensions": e.dimensions },
    })
}

fn decode_cloudevent(ce: &Value) -> Result<ValidEvent, ingest::Rejection> {
    cloudevents::to_usage_event(ce).and_then(|e| ingest::validate(e, now()))
}

#[test]
fn cloudevents_decoding() {
    harness!().for_each(|input: &[u8]| {
        let Some((selector, body)) = input.split_first() else { return };
        let media = if selector % 2 == 0 { cloudevents::SINGLE } else { cloudevents::BATCH };
        let events = match cloudevents::decode_body(media, body) {
            Ok(events) => events,
            Err(e) => {
                assert_eq!(e.field.as_deref(), Some("body"), "{e:?}");
                assert!(!e.message.is_empty());
                return;
            }
        };
        for ce in &events {
            match decode_cloudevent(ce) {
                Ok(ValidEvent(stored)) if stored.retracted => {
                    assert_eq!(ce["retract"], json!(true));
                    assert!(stored.revision >= 1);
                }
                Ok(ValidEvent(stored)) => {
                    // What is stored is what was sent.
                    assert_eq!(ce["id"].as_str(), Some(stored.id.as_str()));
                    assert_eq!(ce["subject"].as_str(), Some(stored.customer.as_str()));
                    assert_eq!(ce["type"].as_str(), Some(stored.meter.as_str()));
                    let sent = ce["data"]["quantity"].as_str().expect("an accepted quantity is a string");
                    assert_eq!(Decimal::from_str_exact(sent.trim()).ok(), Some(stored.quantity));
                    let time = DateTime::parse_from_rfc3339(ce["time"].as_str().unwrap()).unwrap();
                    assert_eq!(time, stored.time);
                    // The event as a producer would send it again is the same content.
                    let again = decode_cloudevent(&as_cloudevent(&stored)).expect("a stored event is valid again");
                    assert_eq!(again.0.digest, stored.digest, "{stored:?}");
                }
                Err(r) => {
                    let attribute = cloudevents::attribute_of(&r.field);
                    assert!(is_cloudevents_attribute(&attribute), "{attribute:?} is not an attribute: {r:?}");
                    assert!(!r.reason.is_empty());
                }
            }
        }
    });
}

/// Independent reading of the quantity grammar: digits, at most one point,
/// at most 12 decimals and 15 integer digits, never negative (`-0` is zero).
fn oracle_quantity(s: &str) -> Option<Decimal> {
    let t = s.trim();
    let unsigned = t.strip_prefix('-').unwrap_or(t);
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int) || !frac.is_none_or(all_digits) || (int.is_empty() && frac.is_none_or(str::is_empty)) {
        return None;
    }
    if frac.map_or(0, str::len) > MAX_SCALE as usize || int.trim_start_matches('0').len() > MAX_INTEGER_DIGITS as usize
    {
        return None;
    }
    let digits = format!("{int}{}", frac.unwrap_or(""));
    let value: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    if value != 0 && t.starts_with('-') {
        return None;
    }
    Some(Decimal::from_i128_with_scale(value, frac.map_or(0, str::len) as u32))
}

#[test]
fn quantity_parsing() {
    harness!().for_each(|input: &[u8]| {
        let Ok(text) = std::str::from_utf8(input) else { return };
        let (a, b) = text.split_once('|').unwrap_or((text, "1"));
        let parsed = money::parse_quantity(a);
        assert_eq!(parsed.as_ref().ok(), oracle_quantity(a).as_ref(), "{a:?}: {parsed:?}");
        let Ok(d) = parsed else {
            assert!(!parsed.unwrap_err().to_string().is_empty());
            return;
        };
        // The window accumulator holds it exactly and reads it back normalised.
        let q = Quantity::from_decimal(d).expect("an accepted quantity fits a window");
        assert_eq!(q.to_decimal(), Some(d.normalize()));
        assert_eq!(q.to_string(), d.normalize().to_string());
        assert_eq!(q.to_string().parse::<Quantity>(), Ok(q));
        // Sums of accepted quantities are exact and undo exactly.
        if let Ok(e) = money::parse_quantity(b) {
            let sum = q.checked_add(Quantity::from_decimal(e).unwrap()).expect("two quantities never overflow");
            assert_eq!(sum.checked_sub(Quantity::from_decimal(e).unwrap()), Some(q));
            if let Ok(s) = money::exact_add(d, e) {
                assert_eq!(money::exact_sub(s, e), Ok(d));
                assert_eq!(Quantity::from_decimal(s).unwrap(), sum);
            }
        }
        // Window values read back from text, any size.
        let _ = b.parse::<Quantity>();
    });
}

/// The field names a gRPC producer sent are the ones a rejection uses.
#[test]
fn grpc_event_validation() {
    harness!().for_each(|input: &[u8]| {
        let Ok(request) = IngestRequest::decode(input) else { return };
        if ingest::check_batch_size(request.events.len(), "events").is_err() {
            return;
        }
        for event in request.events {
            match ingest::validate(event.clone(), now()) {
                Ok(ValidEvent(stored)) if stored.retracted => assert!(event.revision >= 1),
                Ok(ValidEvent(stored)) => {
                    assert!(!stored.id.is_empty() && stored.id.len() <= ingest::MAX_ID_BYTES);
                    assert!(
                        stored
                            .meter
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.'))
                    );
                    assert!(stored.time <= now() + ingest::MAX_FUTURE_SKEW);
                    assert!(stored.dimensions.len() <= ingest::MAX_DIMENSIONS);
                    assert!(stored.quantity >= Decimal::ZERO);
                    // The same content in another notation is the same event.
                    let mut other = event.clone();
                    other.quantity = stored.quantity.normalize().to_string();
                    let again = ingest::validate(UsageEvent::decode(&*other.encode_to_vec()).unwrap(), now());
                    assert_eq!(again.map(|v| v.0.digest), Ok(stored.digest));
                }
                Err(r) => {
                    assert!(usage_event_field(&r.field), "{:?} is not a field: {r:?}", r.field);
                    assert!(!r.reason.is_empty());
                }
            }
        }
    });
}

#[test]
fn wit_decimal_bridge() {
    use tollgate::plugins::{WitDecimal, bindings::rating as wit, from_wit, to_wit};
    use tollgate_sdk::decimal::{Parts, from_parts, push_decimal, to_parts};
    harness!().for_each(|input: &[u8]| {
        let mut bytes = [0u8; 14];
        let n = input.len().min(14);
        bytes[..n].copy_from_slice(&input[..n]);
        let parts = Parts {
            mantissa_low: u64::from_le_bytes(bytes[0..8].try_into().unwrap()),
            mantissa_high: u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
            negative: bytes[12] & 1 == 1,
            scale: bytes[13],
        };
        let record = wit::Decimal::from_parts(parts);
        match from_wit(&record, "amount") {
            Err(e) => {
                assert!(parts.scale > 28, "{parts:?}: {e}");
                assert!(e.to_string().contains("amount"), "{e}");
                assert_eq!(from_parts(parts), None);
            }
            Ok(d) => {
                assert!(parts.scale <= 28);
                assert_eq!(Some(d), from_parts(parts));
                // Back across the boundary: the same parts (a negative zero is zero).
                let back: wit::Decimal = to_wit(d);
                let zero = parts.mantissa_low == 0 && parts.mantissa_high == 0;
                assert_eq!(
                    (back.mantissa_low, back.mantissa_high, back.negative, back.scale),
                    (parts.mantissa_low, parts.mantissa_high, parts.negative && !zero, parts.scale)
                );
                assert_eq!(to_parts(d), from_parts(to_parts(d)).map(to_parts).unwrap());
                // The plugins' formatter writes what Display writes.
                let mut text = String::new();
                push_decimal(&mut text, d);
                assert_eq!(text, d.to_string());
                assert_eq!(Decimal::from_str_exact(&text), Ok(d));
            }
        }
    });
}

/// The bundled plugins as `cargo xtask build-plugins` left them.
fn plugins_dir() -> std::path::PathBuf {
    std::env::var_os("TOLLGATE_PLUGINS_DIR")
        .map(Into::into)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"))
}

/// The bundled mappers, each with a document it maps (from its fixtures)
/// and the first request it sends for it.
struct MapperCase {
    name: &'static str,
    plugin: tollgate::plugins::Plugin,
    document: tollgate::plugins::bindings::posting::PostingDocument,
    target: tollgate::plugins::bindings::posting::TargetConfig,
    request: tollgate::plugins::bindings::posting::ErpRequest,
}

fn mappers() -> &'static (tollgate::plugins::Runtime, Vec<MapperCase>) {
    use tollgate::plugins::fixtures::MapperFixture;
    use tollgate::plugins::{Kind, Limits, Runtime};
    static MAPPERS: OnceLock<(Runtime, Vec<MapperCase>)> = OnceLock::new();
    MAPPERS.get_or_init(|| {
        // Production limits, but a wall-clock deadline no loaded machine
        // reaches: fuel (deterministic) is what stops a runaway mapper here,
        // so a finding replays (a 100 ms deadline once fired on a busy VM).
        let runtime = Runtime::new(Limits { deadline_ms: 10_000, ..Limits::default() }, None).unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins");
        let fixture = |plugin: &str, case: &str| {
            let text = std::fs::read_to_string(root.join(plugin).join("fixtures").join(case)).unwrap();
            MapperFixture::parse(&text).unwrap()
        };
        let cases = [
            ("netsuite", fixture("netsuite", "throttled.input.json")),
            ("business-central", fixture("business-central", "invoice-posted.input.json")),
            ("odoo", fixture("odoo", "invoice-created.input.json")),
            ("sap-s4hana", fixture("sap-s4hana", "posted.input.json")),
            ("generic-json", fixture("generic-json", "invoice-posted.input.json")),
            ("tryton", {
                // No fixtures of its own (its tests run against a real
                // Tryton): Odoo's document, with Tryton's settings.
                let mut f = fixture("odoo", "invoice-created.input.json");
                f.target.name = "tryton".into();
                f.target.settings = [
                    ("unit", "1"),
                    ("company", "1"),
                    ("revenue_account", "3"),
                    ("receivable_account", "4"),
                    ("journal", "2"),
                ]
                .map(|(k, v)| (k.into(), v.into()))
                .into();
                f
            }),
        ];
        let cases = cases
            .into_iter()
            .map(|(name, fixture)| {
                let bytes = std::fs::read(plugins_dir().join(format!("{name}-0.1.0.wasm"))).unwrap();
                let plugin = runtime.load(name, semver::Version::new(0, 1, 0), Kind::ErpMapper, &bytes).unwrap();
                let (document, target) = fixture.to_wit().unwrap();
                let request = runtime.map_document(&plugin, &document, &target).unwrap();
                MapperCase { name, plugin, document, target, request }
            })
            .collect();
        (runtime, cases)
    })
}

/// Whatever an ERP answers, a bundled mapper reads it as posted, rejected
/// (with a reason), transient or a next request, or refuses it with its own
/// error: it never traps or runs away, and a posted number is never empty.
#[test]
fn mapper_answers() {
    use tollgate::plugins::{PluginError, bindings::posting as mwit};
    // The runtime is only read: a panic leaves nothing half changed.
    let shared = std::panic::AssertUnwindSafe(mappers());
    const STATUSES: [u16; 16] = [200, 201, 202, 204, 301, 400, 401, 403, 404, 409, 412, 422, 429, 500, 503, 0];
    harness!().for_each(|input: &[u8]| {
        let (runtime, cases) = &**shared;
        let [case, status, header, body @ ..] = input else { return };
        let case = &cases[*case as usize % cases.len()];
        let status = match STATUSES[*status as usize % STATUSES.len()] {
            0 => u16::from(*status) + 100,
            s => s,
        };
        let headers = match header % 4 {
            0 => vec![],
            1 => vec![("content-type".to_string(), "application/json".to_string())],
            2 => vec![("content-type".to_string(), "text/xml; charset=utf-8".to_string())],
            _ => vec![("location".to_string(), String::from_utf8_lossy(body).into_owned())],
        };
        let response = mwit::ErpResponse { status, headers, body: String::from_utf8_lossy(body).into_owned() };
        let steps = [
            runtime.read_response(&case.plugin, &case.document, &case.target, &case.request, &response),
            runtime.read_lookup(&case.plugin, &case.document, &case.target, &response).map(|o| match o {
                mwit::LookupOutcome::Found(n) => mwit::Step::Posted(n),
                mwit::LookupOutcome::Next(r) => mwit::Step::Next(r),
                mwit::LookupOutcome::Absent => mwit::Step::Transient("absent".into()),
            }),
        ];
        for step in steps {
            match step {
                Ok(mwit::Step::Posted(number)) => assert!(!number.trim().is_empty(), "{}: empty number", case.name),
                Ok(mwit::Step::Rejected(e)) => assert!(!e.message.is_empty(), "{}: {e:?}", case.name),
                Ok(mwit::Step::Transient(_) | mwit::Step::Next(_)) => {}
                Err(PluginError::Plugin { .. } | PluginError::InvalidOutput { .. } | PluginError::TooLarge(_)) => {}
                Err(e) => panic!("{} on {status} {:?}: {e}", case.name, response.body),
            }
        }
    });
}

/// Any configuration text is read or refused naming what is wrong; a read
/// one is valid.
#[test]
fn configuration_parsing() {
    use tollgate::config::{Config, ConfigError};
    harness!().for_each(|input: &[u8]| {
        let Ok(text) = std::str::from_utf8(input) else { return };
        match Config::parse(text, Path::new("fuzz.toml")) {
            Ok(config) => config.validate().expect("a parsed configuration is valid"),
            Err(ConfigError::Invalid { key, message }) => assert!(!key.is_empty() && !message.is_empty()),
            Err(e) => assert!(e.to_string().starts_with("fuzz.toml: "), "{e}"),
        }
    });
}

/// Stored records of any content are decoded or refused, never a panic:
/// a restart never fails on stored bytes; what decodes encodes back the same.
#[test]
fn stored_records() {
    use tollgate::eventlog::codec;
    harness!().for_each(|input: &[u8]| {
        let Some((kind, bytes)) = input.split_first() else { return };
        match kind % 4 {
            0 => {
                if let Ok(e) = codec::decode_event(bytes) {
                    assert_eq!(codec::decode_event(&codec::encode_event(&e)).map(|x| x.digest), Ok(e.digest));
                }
            }
            1 => {
                let _ = codec::decode_record(bytes);
            }
            2 => {
                if let Ok(d) = codec::decode_dedup(bytes) {
                    assert_eq!(codec::decode_dedup(&codec::encode_dedup(&d)).ok(), Some(d));
                }
            }
            _ => {
                if let Ok(w) = codec::decode_window(bytes) {
                    let again = codec::decode_window(&codec::encode_window(&w)).expect("an encoded window decodes");
                    assert_eq!(codec::encode_window(&again), codec::encode_window(&w));
                }
            }
        }
    });
}
