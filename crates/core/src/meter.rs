//! Meter definitions: which events a meter reads, what it takes from each,
//! how it aggregates, by which dimensions it groups and how long its windows
//! are. Product engineering owns them; contract lines refer to them by id.
//!
//! A meter is immutable once created (its windows are derived from it); a
//! different definition needs a new id. Creating one builds its windows
//! from the events already stored (the store's metering projection does).

use crate::error::{ApiError, ErrorCode};
use crate::event::StoredEvent;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// How a meter combines the values of the events in one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Exact decimal sum of the values.
    Sum,
    /// Number of events.
    Count,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Number of distinct values (e.g. active users by `dimensions.user`).
    UniqueCount,
    /// The value of the event with the latest time (a gauge: seats, storage).
    Latest,
}

impl Aggregation {
    /// Aggregations whose values must be decimals.
    pub fn numeric(self) -> bool {
        matches!(self, Aggregation::Sum | Aggregation::Min | Aggregation::Max | Aggregation::Latest)
    }
}

/// What a meter takes from each event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ValuePath {
    /// Nothing: the event is counted (`count` meters).
    Count,
    /// The event's `quantity`.
    Quantity,
    /// One of the event's dimensions: `dimensions.<key>`.
    Dimension(String),
}

/// A meter's `value` that names nothing it can take from an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: expected \"count\", \"quantity\" or \"dimensions.<key>\"")]
pub struct BadValuePath(pub String);

impl TryFrom<String> for ValuePath {
    type Error = BadValuePath;
    fn try_from(s: String) -> Result<ValuePath, BadValuePath> {
        match s.as_str() {
            "count" => Ok(ValuePath::Count),
            "quantity" => Ok(ValuePath::Quantity),
            _ => match s.strip_prefix("dimensions.") {
                Some(k) if is_dimension_key(k) => Ok(ValuePath::Dimension(k.to_string())),
                _ => Err(BadValuePath(s)),
            },
        }
    }
}

impl From<ValuePath> for String {
    fn from(p: ValuePath) -> String {
        match p {
            ValuePath::Count => "count".into(),
            ValuePath::Quantity => "quantity".into(),
            ValuePath::Dimension(k) => format!("dimensions.{k}"),
        }
    }
}

/// A window length that divides a day, so windows line up with days and
/// billing periods (UTC): `1m` … `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct WindowSize {
    seconds: u32,
}

const DAY: u32 = 86_400;

impl WindowSize {
    pub const HOUR: WindowSize = WindowSize { seconds: 3600 };

    pub fn seconds(self) -> u32 {
        self.seconds
    }

    /// The start of the window holding `t`.
    pub fn start_of(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let s = i64::from(self.seconds);
        DateTime::from_timestamp(t.timestamp().div_euclid(s) * s, 0).unwrap_or(t)
    }

    pub fn end_of_window(self, start: DateTime<Utc>) -> DateTime<Utc> {
        start + chrono::Duration::seconds(i64::from(self.seconds))
    }
}

/// A window length that is not a whole number of minutes, hours or days
/// dividing a day.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: a length like \"15m\", \"1h\" or \"1d\" that divides a day")]
pub struct BadWindowSize(pub String);

impl TryFrom<String> for WindowSize {
    type Error = BadWindowSize;
    fn try_from(s: String) -> Result<WindowSize, BadWindowSize> {
        let bad = || BadWindowSize(s.clone());
        let (n, unit) = s.split_at(s.len().saturating_sub(1));
        let n: u32 = n.parse().map_err(|_| bad())?;
        let seconds = match unit {
            "m" => n.checked_mul(60),
            "h" => n.checked_mul(3600),
            "d" => n.checked_mul(DAY),
            _ => None,
        }
        .ok_or_else(bad)?;
        if seconds == 0 || seconds > DAY || !DAY.is_multiple_of(seconds) {
            return Err(bad());
        }
        Ok(WindowSize { seconds })
    }
}

impl From<WindowSize> for String {
    fn from(w: WindowSize) -> String {
        match w.seconds {
            s if s % DAY == 0 => format!("{}d", s / DAY),
            s if s % 3600 == 0 => format!("{}h", s / 3600),
            s => format!("{}m", s / 60),
        }
    }
}

/// A meter as the admin API receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterSpec {
    /// Referred to by contract lines; letters, digits, `_ - .`, 1..=64 bytes.
    pub id: String,
    /// Events whose type (CloudEvents `type`, gRPC `meter`) is this.
    pub event_type: String,
    pub aggregation: Aggregation,
    /// `count`, `quantity` or `dimensions.<key>`; default `count` for
    /// `count` meters and `quantity` for the others.
    #[serde(default)]
    pub value: Option<String>,
    /// Dimensions the windows are split by (at most [`MAX_GROUP_BY`]).
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Window length, default `1h`.
    #[serde(default)]
    pub window: Option<String>,
    #[serde(default)]
    pub description: String,
}

/// Whether a meter's windows are complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeterState {
    /// Its windows are being built from the stored events.
    Building,
    /// Every stored event is counted; new events update it as they are stored.
    Active,
    /// Its windows could not take an event (damaged stored data): it counts
    /// nothing more, its reason is in [`Meter::failure`], and contract lines
    /// on it are not billed (listed as unmatched, reason `meter-failed`)
    /// while the tenant's other meters, and every other tenant, go on.
    Failed,
}

/// A meter as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meter {
    pub id: String,
    pub event_type: String,
    pub aggregation: Aggregation,
    pub value: ValuePath,
    pub group_by: Vec<String>,
    pub window: WindowSize,
    pub description: String,
    pub created_at: DateTime<Utc>,
    pub state: MeterState,
    /// Why a `failed` meter stopped counting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// Most dimensions a meter groups by.
pub const MAX_GROUP_BY: usize = 8;
/// Longest meter id.
pub const MAX_METER_ID_BYTES: usize = 64;
/// Most meters per tenant.
pub const MAX_METERS_PER_TENANT: usize = 1000;

fn is_dimension_key(k: &str) -> bool {
    !k.is_empty() && k.len() <= crate::event::MAX_DIMENSION_KEY_BYTES && !k.chars().any(|c| c.is_control() || c == '.')
}

/// Meter ids: ASCII letters, digits, `_ - .`.
pub fn is_meter_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_METER_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn bad(field: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::field(ErrorCode::InvalidArgument, field, message)
}

impl MeterSpec {
    /// Checks the definition; the error names the field.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<Meter, ApiError> {
        if !is_meter_id(&self.id) {
            return Err(bad(
                "id",
                format!("{:?}: letters, digits, '_', '-', '.'; 1..={MAX_METER_ID_BYTES} bytes", self.id),
            ));
        }
        if self.event_type.is_empty()
            || self.event_type.len() > crate::event::MAX_METER_BYTES
            || self.event_type.chars().any(char::is_control)
        {
            return Err(bad(
                "event_type",
                format!("{:?}: 1..={} bytes, no control characters", self.event_type, crate::event::MAX_METER_BYTES),
            ));
        }
        let value = match &self.value {
            None if self.aggregation == Aggregation::Count => ValuePath::Count,
            None => ValuePath::Quantity,
            Some(v) => ValuePath::try_from(v.clone()).map_err(|e| bad("value", e.to_string()))?,
        };
        match (self.aggregation, &value) {
            (Aggregation::Count, ValuePath::Count) => {}
            (Aggregation::Count, _) => {
                return Err(bad("value", "a count meter counts events; value must be \"count\""));
            }
            (agg, ValuePath::Count) => {
                return Err(bad(
                    "value",
                    format!("{agg:?} needs a value to aggregate: \"quantity\" or \"dimensions.<key>\""),
                ));
            }
            _ => {}
        }
        if self.group_by.len() > MAX_GROUP_BY {
            return Err(bad("group_by", format!("{} dimensions; at most {MAX_GROUP_BY}", self.group_by.len())));
        }
        for (i, k) in self.group_by.iter().enumerate() {
            if !is_dimension_key(k) {
                return Err(bad(format!("group_by[{i}]"), format!("{k:?} is not a dimension key")));
            }
            if self.group_by[..i].contains(k) {
                return Err(bad(format!("group_by[{i}]"), format!("{k:?} appears twice")));
            }
        }
        let window = match &self.window {
            None => WindowSize::HOUR,
            Some(w) => WindowSize::try_from(w.clone()).map_err(|e| bad("window", e.to_string()))?,
        };
        if self.description.len() > 1024 {
            return Err(bad("description", "at most 1024 bytes"));
        }
        Ok(Meter {
            id: self.id.clone(),
            event_type: self.event_type.clone(),
            aggregation: self.aggregation,
            value,
            group_by: self.group_by.clone(),
            window,
            description: self.description.clone(),
            created_at: now,
            state: MeterState::Building,
            failure: None,
        })
    }
}

/// One event's contribution to a meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sample {
    /// A `count` meter: the event itself.
    Event,
    /// A decimal value (sum, min, max, latest; unique_count of `quantity`).
    Number(Decimal),
    /// A text value (unique_count of a dimension).
    Text(String),
}

impl Meter {
    /// Same definition (ignoring creation time and state).
    pub fn same_definition(&self, other: &Meter) -> bool {
        Meter { created_at: other.created_at, state: other.state, failure: other.failure.clone(), ..self.clone() }
            == *other
    }

    /// What `e` contributes, or why it cannot be counted (which field).
    pub fn sample(&self, e: &StoredEvent) -> Result<Sample, (String, String)> {
        let number = |field: String, text: &str| {
            // The same rules as an event's quantity: exact, non-negative.
            crate::money::parse_quantity(text)
                .map_err(|e| (field, format!("{text:?} is not a decimal quantity ({e}); meter {} reads it", self.id)))
        };
        match (&self.value, self.aggregation) {
            (ValuePath::Count, _) => Ok(Sample::Event),
            (ValuePath::Quantity, Aggregation::UniqueCount) => Ok(Sample::Text(e.quantity.normalize().to_string())),
            (ValuePath::Quantity, _) => Ok(Sample::Number(e.quantity)),
            (ValuePath::Dimension(k), agg) => {
                let field = format!("dimensions.{k}");
                let Some(v) = e.dimensions.get(k) else {
                    return Err((field, format!("required by meter {} ({agg:?} of this dimension)", self.id)));
                };
                if agg.numeric() { number(field, v).map(Sample::Number) } else { Ok(Sample::Text(v.clone())) }
            }
        }
    }

    /// The values of the group-by dimensions of `e` (missing ones empty).
    pub fn group<'a>(&self, e: &'a StoredEvent) -> Vec<&'a str> {
        self.group_by.iter().map(|k| e.dimensions.get(k).map_or("", String::as_str)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: serde_json::Value) -> Result<Meter, ApiError> {
        serde_json::from_value::<MeterSpec>(json).unwrap().validate(Utc::now())
    }

    #[test]
    fn window_sizes_divide_a_day() {
        for (s, secs) in [("1m", 60), ("15m", 900), ("1h", 3600), ("6h", 21600), ("1d", 86400), ("60m", 3600)] {
            assert_eq!(WindowSize::try_from(s.to_string()).unwrap().seconds(), secs, "{s}");
        }
        for s in ["0h", "7m", "5h", "2d", "1", "h", "-1h", "1.5h", ""] {
            assert!(WindowSize::try_from(s.to_string()).is_err(), "{s}");
        }
        assert_eq!(String::from(WindowSize::try_from("60m".to_string()).unwrap()), "1h");
        let w = WindowSize::try_from("15m".to_string()).unwrap();
        let t = DateTime::parse_from_rfc3339("2026-11-03T13:59:59Z").unwrap().with_timezone(&Utc);
        assert_eq!(w.start_of(t).to_rfc3339(), "2026-11-03T13:45:00+00:00");
    }

    #[test]
    fn definitions_are_checked_field_by_field() {
        let ok = spec(serde_json::json!({"id": "calls", "event_type": "api_calls", "aggregation": "sum"})).unwrap();
        assert_eq!((ok.value, ok.window), (ValuePath::Quantity, WindowSize::HOUR));
        let field = |j| spec(j).unwrap_err().field.unwrap_or_default();
        let cases = [
            (serde_json::json!({"id": "a b", "event_type": "x", "aggregation": "sum"}), "id"),
            (serde_json::json!({"id": "a", "event_type": "", "aggregation": "sum"}), "event_type"),
            (serde_json::json!({"id": "a", "event_type": "x", "aggregation": "count", "value": "quantity"}), "value"),
            (serde_json::json!({"id": "a", "event_type": "x", "aggregation": "max", "value": "count"}), "value"),
            (serde_json::json!({"id": "a", "event_type": "x", "aggregation": "sum", "value": "data.x"}), "value"),
            (serde_json::json!({"id": "a", "event_type": "x", "aggregation": "sum", "window": "7m"}), "window"),
            (
                serde_json::json!({"id": "a", "event_type": "x", "aggregation": "sum", "group_by": ["r", "r"]}),
                "group_by[1]",
            ),
        ];
        for (json, expected) in cases {
            assert_eq!(field(json.clone()), expected, "{json}");
        }
    }
}
