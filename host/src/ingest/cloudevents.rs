//! Usage events as CloudEvents 1.0 (structured JSON mode) over HTTP:
//! `POST /v1/events` with `content-type: application/cloudevents+json` (one
//! event) or `application/cloudevents-batch+json` (a JSON array).
//!
//! Mapping to a usage event:
//!
//! | CloudEvents attribute | usage event | notes |
//! |---|---|---|
//! | `specversion` | — | must be `"1.0"` |
//! | `id` | `id` | dedup key per tenant, as over gRPC |
//! | `source` | `source` | required by CloudEvents |
//! | `type` | `meter` | e.g. `api_calls`; lowercase letters, digits, `_ - .` |
//! | `subject` | `customer` | required here |
//! | `time` | `time` | RFC 3339, required here |
//! | `datacontenttype` | — | absent or `application/json` |
//! | `data.quantity` | `quantity` | a decimal **string** (`"12.5"`); JSON numbers are refused, as they may have passed through a float |
//! | `data.dimensions` | `dimensions` | optional object of string values |
//! | `revision` (extension) | `revision` | optional integer ≥ 0; a higher one corrects the event with the same id |
//! | `retract` (extension) | `retract` | optional boolean; `true` with a higher `revision` retracts the event (`subject`, `time` and `data` are then not needed) |
//!
//! Each event gets its own result, exactly as over gRPC; a malformed event
//! (not an object, a missing attribute) is rejected naming the attribute,
//! and never fails the others.

use super::Rejection;
use crate::error::{ApiError, ErrorCode};
use crate::proto::UsageEvent;
use serde_json::Value;

/// Media type of one structured-mode event.
pub const SINGLE: &str = "application/cloudevents+json";
/// Media type of a batch.
pub const BATCH: &str = "application/cloudevents-batch+json";

/// The events of a `POST /v1/events` body of media type `media` (its
/// parameters already removed): one structured-mode event, or a batch.
pub fn decode_body(media: &str, body: &[u8]) -> Result<Vec<Value>, ApiError> {
    let bad = |message: String| ApiError::field(ErrorCode::InvalidArgument, "body", message);
    match media {
        SINGLE => Ok(vec![serde_json::from_slice(body).map_err(|e| bad(format!("not JSON: {e}")))?]),
        BATCH => match serde_json::from_slice(body).map_err(|e| bad(format!("not JSON: {e}")))? {
            Value::Array(events) => Ok(events),
            _ => Err(bad("a batch must be a JSON array of CloudEvents".into())),
        },
        other => Err(ApiError::field(
            ErrorCode::UnsupportedMediaType,
            "content-type",
            format!("{other:?}; send {SINGLE} or {BATCH}"),
        )),
    }
}

/// The CloudEvents attribute a usage-event field comes from (see the
/// table above), so a rejection names what the producer sent.
pub fn attribute_of(field: &str) -> String {
    match field {
        "customer" => "subject".into(),
        "meter" => "type".into(),
        "quantity" => "data.quantity".into(),
        f => match f.strip_prefix("dimensions") {
            Some(rest) if rest.is_empty() || rest.starts_with('.') => format!("data.dimensions{rest}"),
            _ => f.to_string(),
        },
    }
}

fn reject(field: &str, reason: impl Into<String>) -> Rejection {
    Rejection { field: field.to_string(), reason: reason.into() }
}

fn string_attr<'a>(ce: &'a serde_json::Map<String, Value>, name: &str) -> Result<&'a str, Rejection> {
    match ce.get(name) {
        None | Some(Value::Null) => Err(reject(name, "required")),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(reject(name, format!("must be a string, not {}", kind(other)))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The event's id when it has a string one (for the result line).
pub fn id_of(ce: &Value) -> String {
    ce.get("id").and_then(Value::as_str).unwrap_or_default().to_string()
}

/// One CloudEvent as a usage event; the limits and formats of the fields
/// themselves are checked by [`super::validate`] afterwards.
pub fn to_usage_event(ce: &Value) -> Result<UsageEvent, Rejection> {
    let ce = ce.as_object().ok_or_else(|| reject("event", format!("must be a JSON object, not {}", kind(ce))))?;
    let version = string_attr(ce, "specversion")?;
    if version != "1.0" {
        return Err(reject("specversion", format!("{version:?}; only CloudEvents \"1.0\" is supported")));
    }
    match ce.get("datacontenttype") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "application/json" || t.starts_with("application/json;") => {}
        Some(other) => return Err(reject("datacontenttype", format!("{other}; only application/json data is taken"))),
    }
    let revision = match ce.get("revision") {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| reject("revision", format!("{n} is not an integer from 0 to {}", u32::MAX)))?,
        Some(other) => return Err(reject("revision", format!("must be an integer, not {}", kind(other)))),
    };
    let retract = match ce.get("retract") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(reject("retract", format!("must be a boolean, not {}", kind(other)))),
    };
    if retract {
        return Ok(UsageEvent {
            id: string_attr(ce, "id")?.to_string(),
            source: string_attr(ce, "source")?.to_string(),
            revision,
            retract,
            ..UsageEvent::default()
        });
    }
    let time = string_attr(ce, "time")?;
    let time = chrono::DateTime::parse_from_rfc3339(time)
        .map_err(|e| reject("time", format!("{time:?} is not an RFC 3339 timestamp: {e}")))?;
    let data = match ce.get("data") {
        Some(Value::Object(d)) => d,
        None | Some(Value::Null) => return Err(reject("data", "required: {\"quantity\": \"<decimal>\"}")),
        Some(other) => return Err(reject("data", format!("must be a JSON object, not {}", kind(other)))),
    };
    let quantity = match data.get("quantity") {
        Some(Value::String(q)) => q.clone(),
        Some(Value::Number(n)) => {
            return Err(reject(
                "data.quantity",
                format!("{n} is a JSON number; send the decimal as a string (\"{n}\")"),
            ));
        }
        None | Some(Value::Null) => return Err(reject("data.quantity", "required")),
        Some(other) => return Err(reject("data.quantity", format!("must be a decimal string, not {}", kind(other)))),
    };
    let mut dimensions = std::collections::HashMap::new();
    match data.get("dimensions") {
        None | Some(Value::Null) => {}
        Some(Value::Object(d)) => {
            for (k, v) in d {
                let v = v.as_str().ok_or_else(|| {
                    reject(&format!("data.dimensions.{k}"), format!("must be a string, not {}", kind(v)))
                })?;
                dimensions.insert(k.clone(), v.to_string());
            }
        }
        Some(other) => return Err(reject("data.dimensions", format!("must be an object, not {}", kind(other)))),
    }
    if let Some(extra) = data.keys().find(|k| !matches!(k.as_str(), "quantity" | "dimensions")) {
        return Err(reject(&format!("data.{extra}"), "unknown field; data takes quantity and dimensions"));
    }
    let time = time.with_timezone(&chrono::Utc);
    Ok(UsageEvent {
        id: string_attr(ce, "id")?.to_string(),
        customer: string_attr(ce, "subject")?.to_string(),
        meter: string_attr(ce, "type")?.to_string(),
        time: Some(prost_types::Timestamp { seconds: time.timestamp(), nanos: time.timestamp_subsec_nanos() as i32 }),
        quantity,
        dimensions,
        source: string_attr(ce, "source")?.to_string(),
        revision,
        retract,
    })
}
