//! Binary encoding of stored events, WAL records, dedup entries and
//! metering windows.
//!
//! Compact and cheap on the ingest path (no JSON per event): integers are
//! little-endian, strings and byte strings carry a `u32` length, decimals are
//! `rust_decimal`'s own lossless 16-byte form, instants are nanoseconds since
//! the Unix epoch. Every encoding starts with a format version byte, so a
//! later release can still read what this one wrote.

use super::StoredEvent;
use crate::metering::window::MeterWindow;
use crate::money::Quantity;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::sync::Arc;

const EVENT_V1: u8 = 1;
const RECORD_V1: u8 = 1;
const DEDUP_V1: u8 = 1;
/// Version 1 (sum and count of an hour) is gone with meter definitions.
/// Version 2 held the value as a 16-byte decimal; version 3 as a 32-byte
/// [`Quantity`] (so no sum can overflow). Both are read.
const WINDOW_V2: u8 = 2;
const WINDOW_V3: u8 = 3;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("truncated: wanted {wanted} more bytes at offset {at}")]
    Truncated { at: usize, wanted: usize },
    #[error("unknown format version {0}")]
    Version(u8),
    #[error("field {0} is not valid UTF-8")]
    Utf8(&'static str),
    #[error("field {0} is out of range")]
    Range(&'static str),
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

/// One accepted event as written to the WAL: its position, tenant, the event
/// and, for a correction or retraction, the revision it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub lsn: u64,
    pub tenant: String,
    pub event: Arc<StoredEvent>,
    pub supersedes: Option<Arc<StoredEvent>>,
}

/// What dedup knows of an event id: its current revision, where that revision
/// is stored, and when it was received (for the optional retention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupEntry {
    pub revision: u32,
    pub retracted: bool,
    pub digest: String,
    pub received_at: DateTime<Utc>,
    /// Key of the current revision: the live event, or its history entry for
    /// a retraction.
    pub location: Vec<u8>,
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
    }
    fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    fn time(&mut self, t: DateTime<Utc>) {
        self.u64(nanos(t) as u64);
    }
}

pub use tollgate_core::event::nanos;

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() - self.at < n {
            return Err(CodecError::Truncated { at: self.at, wanted: n });
        }
        let s = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn decimal(&mut self) -> Result<Decimal, CodecError> {
        let mut d = [0u8; 16];
        d.copy_from_slice(self.take(16)?);
        Ok(Decimal::deserialize(d))
    }
    fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn str(&mut self, field: &'static str) -> Result<String, CodecError> {
        std::str::from_utf8(self.bytes()?).map(str::to_owned).map_err(|_| CodecError::Utf8(field))
    }
    fn time(&mut self, field: &'static str) -> Result<DateTime<Utc>, CodecError> {
        let n = self.u64()? as i64;
        if n < 0 {
            return Err(CodecError::Range(field));
        }
        Ok(DateTime::from_timestamp_nanos(n))
    }
    fn end(&self) -> Result<(), CodecError> {
        match self.buf.len() - self.at {
            0 => Ok(()),
            n => Err(CodecError::Trailing(n)),
        }
    }
}

fn put_event(w: &mut Writer<'_>, e: &StoredEvent) {
    w.u8(EVENT_V1);
    w.u64(e.lsn);
    w.str(&e.id);
    w.u32(e.revision);
    w.u8(u8::from(e.retracted));
    w.str(&e.customer);
    w.str(&e.meter);
    w.time(e.time);
    w.0.extend_from_slice(&e.quantity.serialize());
    w.u32(e.dimensions.len() as u32);
    for (k, v) in &e.dimensions {
        w.str(k);
        w.str(v);
    }
    w.str(&e.source);
    w.str(&e.digest);
    w.time(e.received_at);
}

fn get_event(r: &mut Reader<'_>) -> Result<StoredEvent, CodecError> {
    match r.u8()? {
        EVENT_V1 => {}
        v => return Err(CodecError::Version(v)),
    }
    let lsn = r.u64()?;
    let id = r.str("id")?;
    let revision = r.u32()?;
    let retracted = r.u8()? != 0;
    let customer = r.str("customer")?;
    let meter = r.str("meter")?;
    let time = r.time("time")?;
    let quantity = r.decimal()?;
    let n = r.u32()? as usize;
    let mut dimensions = BTreeMap::new();
    for _ in 0..n {
        let k = r.str("dimensions")?;
        dimensions.insert(k, r.str("dimensions")?);
    }
    Ok(StoredEvent {
        lsn,
        id,
        revision,
        retracted,
        customer,
        meter,
        time,
        quantity,
        dimensions,
        source: r.str("source")?,
        digest: r.str("digest")?,
        received_at: r.time("received_at")?,
    })
}

/// The stored form of an event.
pub fn encode_event(e: &StoredEvent) -> Vec<u8> {
    let mut buf = Vec::with_capacity(160);
    put_event(&mut Writer(&mut buf), e);
    buf
}

pub fn decode_event(bytes: &[u8]) -> Result<StoredEvent, CodecError> {
    let mut r = Reader { buf: bytes, at: 0 };
    let e = get_event(&mut r)?;
    r.end()?;
    Ok(e)
}

/// Appends the WAL payload of a record to `buf`.
pub fn encode_record(rec: &Record, buf: &mut Vec<u8>) {
    let mut w = Writer(buf);
    w.u8(RECORD_V1);
    w.u64(rec.lsn);
    w.str(&rec.tenant);
    put_event(&mut w, &rec.event);
    match &rec.supersedes {
        None => w.u8(0),
        Some(s) => {
            w.u8(1);
            put_event(&mut w, s);
        }
    }
}

pub fn decode_record(bytes: &[u8]) -> Result<Record, CodecError> {
    let mut r = Reader { buf: bytes, at: 0 };
    match r.u8()? {
        RECORD_V1 => {}
        v => return Err(CodecError::Version(v)),
    }
    let lsn = r.u64()?;
    let tenant = r.str("tenant")?;
    let event = Arc::new(get_event(&mut r)?);
    let supersedes = match r.u8()? {
        0 => None,
        _ => Some(Arc::new(get_event(&mut r)?)),
    };
    r.end()?;
    Ok(Record { lsn, tenant, event, supersedes })
}

pub fn encode_dedup(d: &DedupEntry) -> Vec<u8> {
    let mut buf = Vec::with_capacity(96 + d.location.len());
    let mut w = Writer(&mut buf);
    w.u8(DEDUP_V1);
    w.u32(d.revision);
    w.u8(u8::from(d.retracted));
    w.str(&d.digest);
    w.time(d.received_at);
    w.bytes(&d.location);
    buf
}

pub fn decode_dedup(bytes: &[u8]) -> Result<DedupEntry, CodecError> {
    let mut r = Reader { buf: bytes, at: 0 };
    match r.u8()? {
        DEDUP_V1 => {}
        v => return Err(CodecError::Version(v)),
    }
    let d = DedupEntry {
        revision: r.u32()?,
        retracted: r.u8()? != 0,
        digest: r.str("digest")?,
        received_at: r.time("received_at")?,
        location: r.bytes()?.to_vec(),
    };
    r.end()?;
    Ok(d)
}

pub fn encode_window(w: &MeterWindow) -> Vec<u8> {
    let mut buf = Vec::with_capacity(50);
    buf.push(WINDOW_V3);
    let mut wr = Writer(&mut buf);
    wr.u64(w.events);
    wr.u64(w.skipped);
    wr.0.extend_from_slice(&w.value.to_bytes());
    match w.latest {
        None => wr.u8(0),
        Some((nanos, lsn)) => {
            wr.u8(1);
            wr.u64(nanos);
            wr.u64(lsn);
        }
    }
    buf
}

pub fn decode_window(bytes: &[u8]) -> Result<MeterWindow, CodecError> {
    let mut r = Reader { buf: bytes, at: 0 };
    let version = r.u8()?;
    let (events, skipped) = (r.u64()?, r.u64()?);
    let value = match version {
        WINDOW_V2 => Quantity::from_decimal(r.decimal()?).map_err(|_| CodecError::Range("value"))?,
        WINDOW_V3 => Quantity::from_bytes(r.take(32)?.try_into().map_err(|_| CodecError::Range("value"))?),
        v => return Err(CodecError::Version(v)),
    };
    let mut w = MeterWindow { events, skipped, value, latest: None };
    w.latest = match r.u8()? {
        0 => None,
        1 => Some((r.u64()?, r.u64()?)),
        _ => return Err(CodecError::Range("latest")),
    };
    r.end()?;
    Ok(w)
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use std::str::FromStr;

    pub(crate) fn sample(id: &str) -> StoredEvent {
        StoredEvent {
            lsn: 42,
            id: id.into(),
            revision: 3,
            retracted: false,
            customer: "acme".into(),
            meter: "api_calls".into(),
            time: DateTime::parse_from_rfc3339("2026-11-03T10:05:00.123456789Z").unwrap().with_timezone(&Utc),
            quantity: Decimal::from_str("12345678901234.000000000001").unwrap(),
            dimensions: [("region".to_string(), "eu-west".to_string()), ("ü".into(), String::new())].into(),
            source: "gw".into(),
            digest: "ab".repeat(32),
            received_at: DateTime::parse_from_rfc3339("2026-11-03T10:05:01Z").unwrap().with_timezone(&Utc),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::sample;
    use super::*;

    #[test]
    fn events_and_records_round_trip_exactly() {
        let e = sample("e-1");
        let back = decode_event(&encode_event(&e)).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.quantity.to_string(), "12345678901234.000000000001");
        let rec = Record {
            lsn: 7,
            tenant: "t".into(),
            event: Arc::new(e.clone()),
            supersedes: Some(Arc::new(sample("e-0"))),
        };
        let mut buf = Vec::new();
        encode_record(&rec, &mut buf);
        assert_eq!(decode_record(&buf).unwrap(), rec);
        let d = DedupEntry {
            revision: 2,
            retracted: true,
            digest: "cd".repeat(32),
            received_at: e.received_at,
            location: vec![b'r', 0, 1, 2, 0],
        };
        assert_eq!(decode_dedup(&encode_dedup(&d)).unwrap(), d);
        for latest in [None, Some((1_700_000_000_000_000_000, 9))] {
            let w = MeterWindow { events: 3, skipped: 1, value: Quantity::from_decimal(e.quantity).unwrap(), latest };
            assert_eq!(decode_window(&encode_window(&w)).unwrap(), w);
            // A window stored by an earlier build (a 16-byte decimal) still reads.
            let mut v2 = vec![WINDOW_V2];
            v2.extend_from_slice(&3u64.to_le_bytes());
            v2.extend_from_slice(&1u64.to_le_bytes());
            v2.extend_from_slice(&e.quantity.serialize());
            v2.extend_from_slice(&encode_window(&w)[1 + 16 + 32..]);
            assert_eq!(decode_window(&v2).unwrap(), w);
        }
    }

    #[test]
    fn damaged_bytes_are_errors_not_panics() {
        let bytes = encode_event(&sample("e-1"));
        for cut in 0..bytes.len() {
            assert!(decode_event(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert_eq!(decode_event(&extra), Err(CodecError::Trailing(1)));
        let mut v = bytes;
        v[0] = 9;
        assert_eq!(decode_event(&v), Err(CodecError::Version(9)));
    }
}
