//! The write-ahead log: append-only segment files of framed records.
//!
//! A segment is `<first lsn, 20 digits>.wal`; a frame is
//! `[payload length: u32 LE][CRC-32 of the payload: u32 LE][payload]`. Only
//! the newest segment is ever appended to, and a new segment is created (and
//! its directory entry fsynced) only after the previous one is durable, so
//! after a crash a damaged frame can only be the unacknowledged tail of the
//! newest segment: recovery cuts it off. A damaged frame anywhere else is
//! corruption, and the gateway refuses to start rather than guess.

use super::codec::{self, Record};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

const HEADER: usize = 8;
/// Largest accepted frame payload; a length above it is damage, not data.
const MAX_FRAME: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("wal {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "wal segment {path} is damaged at byte {offset}: {reason}; it is not the newest segment, so this is not a torn write: restore it or move it away"
    )]
    Corrupt { path: PathBuf, offset: usize, reason: FrameError },
}

/// Why the bytes at some offset of a segment are not a whole frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("{0} bytes, less than a frame header")]
    ShortHeader(usize),
    #[error("frame of {0} bytes runs past the end")]
    PastEnd(usize),
    #[error("checksum mismatch")]
    Checksum,
    #[error("{0}")]
    Record(#[from] codec::CodecError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io { path: path.to_path_buf(), source }
}

/// Appends `rec` to `buf` as one frame.
pub fn push_frame(buf: &mut Vec<u8>, rec: &Record) {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    codec::encode_record(rec, buf);
    let len = (buf.len() - start - HEADER) as u32;
    let crc = crc32fast::hash(&buf[start + HEADER..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The open log: the newest segment, appended to.
pub struct Wal {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    size: u64,
    /// First lsn of every segment on disk, oldest first (the last is `file`).
    segments: Vec<u64>,
    segment_bytes: u64,
}

fn segment_path(dir: &Path, first_lsn: u64) -> PathBuf {
    dir.join(format!("{first_lsn:020}.wal"))
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// The segments in `dir`, by first lsn.
fn list(dir: &Path) -> Result<Vec<u64>, WalError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name.strip_suffix(".wal").and_then(|n| n.parse::<u64>().ok()) {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

impl Wal {
    /// Reads every record on disk in order, handing each to `visit`, cuts off
    /// a torn tail, and opens a new segment starting at the lsn after the
    /// last record (or `min_next_lsn`, whichever is higher). Returns the log
    /// and the next lsn.
    pub fn recover<E: From<WalError>>(
        dir: &Path,
        segment_bytes: u64,
        min_next_lsn: u64,
        mut visit: impl FnMut(Record) -> Result<(), E>,
    ) -> Result<(Wal, u64), E> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let segments = list(dir)?;
        let mut next = min_next_lsn;
        for (i, first) in segments.iter().enumerate() {
            let path = segment_path(dir, *first);
            let bytes = std::fs::read(&path).map_err(io_err(&path))?;
            let newest = i + 1 == segments.len();
            let mut at = 0;
            while at < bytes.len() {
                match read_frame(&bytes[at..]) {
                    Ok((rec, used)) => {
                        next = next.max(rec.lsn + 1);
                        visit(rec)?;
                        at += used;
                    }
                    Err(reason) if newest => {
                        tracing::warn!(segment = %path.display(), offset = at, %reason, "cutting off the torn tail of the write-ahead log (never acknowledged)");
                        let f = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
                        f.set_len(at as u64).and_then(|_| f.sync_all()).map_err(io_err(&path))?;
                        break;
                    }
                    Err(reason) => return Err(WalError::Corrupt { path, offset: at, reason }.into()),
                }
            }
        }
        let mut wal = Wal::create(dir, next, segment_bytes)?;
        wal.segments = segments;
        if wal.segments.last() != Some(&next) {
            wal.segments.push(next);
        }
        Ok((wal, next))
    }

    fn create(dir: &Path, first_lsn: u64, segment_bytes: u64) -> Result<Wal, WalError> {
        let path = segment_path(dir, first_lsn);
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
        let size = file.metadata().map_err(io_err(&path))?.len();
        sync_dir(dir)?;
        Ok(Wal { dir: dir.to_path_buf(), file, path, size, segments: vec![first_lsn], segment_bytes })
    }

    /// Writes whole frames and, when `sync`, makes them durable (fdatasync)
    /// before returning.
    pub fn append(&mut self, frames: &[u8], sync: bool) -> Result<(), WalError> {
        self.file.write_all(frames).map_err(io_err(&self.path))?;
        if sync {
            self.file.sync_data().map_err(io_err(&self.path))?;
        }
        self.size += frames.len() as u64;
        Ok(())
    }

    /// Takes back a failed [`Wal::append`]: the segment is cut back to what
    /// the last successful append left (all of it durable) and that is made
    /// durable, so nothing of the failed frames survives a restart.
    pub fn rollback(&mut self) -> Result<(), WalError> {
        self.file.set_len(self.size).and_then(|()| self.file.sync_all()).map_err(io_err(&self.path))
    }

    /// Whether the log's file system takes a write now: a small file is
    /// written, made durable and removed (after ENOSPC or EIO, to know when
    /// writes may be tried again).
    pub fn probe(&self) -> Result<(), WalError> {
        let path = self.dir.join("probe.tmp");
        let written = (|| {
            let mut f = File::create(&path)?;
            f.write_all(&[0u8; 64 << 10])?;
            f.sync_all()
        })();
        let _ = std::fs::remove_file(&path);
        written.map_err(io_err(&path))
    }

    /// Starts a new segment at `next_lsn` once the current one is full.
    /// Call between appends only (the current segment is durable then).
    pub fn rotate_if_full(&mut self, next_lsn: u64) -> Result<(), WalError> {
        if self.size < self.segment_bytes || self.segments.last() == Some(&next_lsn) {
            return Ok(());
        }
        self.file.sync_all().map_err(io_err(&self.path))?;
        let segments = std::mem::take(&mut self.segments);
        *self = Wal::create(&self.dir, next_lsn, self.segment_bytes)?;
        self.segments = segments;
        self.segments.push(next_lsn);
        Ok(())
    }

    /// Deletes the segments every record of which has an lsn ≤ `through`
    /// (their effects are durable elsewhere). The newest segment stays.
    pub fn remove_through(&mut self, through: u64) -> Result<usize, WalError> {
        let mut removed = 0;
        while self.segments.len() > 1 && self.segments[1] <= through + 1 {
            let path = segment_path(&self.dir, self.segments[0]);
            std::fs::remove_file(&path).map_err(io_err(&path))?;
            self.segments.remove(0);
            removed += 1;
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Segments on disk.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }
}

/// One frame at the start of `bytes`: the record and the bytes it used.
fn read_frame(bytes: &[u8]) -> Result<(Record, usize), FrameError> {
    if bytes.len() < HEADER {
        return Err(FrameError::ShortHeader(bytes.len()));
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let crc = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if len > MAX_FRAME || bytes.len() - HEADER < len {
        return Err(FrameError::PastEnd(len));
    }
    let payload = &bytes[HEADER..HEADER + len];
    if crc32fast::hash(payload) != crc {
        return Err(FrameError::Checksum);
    }
    let rec = codec::decode_record(payload)?;
    Ok((rec, HEADER + len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eventlog::codec::tests_support::sample;

    fn rec(lsn: u64) -> Record {
        let mut e = sample(&format!("e-{lsn}"));
        e.lsn = lsn;
        Record { lsn, tenant: "t".into(), event: std::sync::Arc::new(e), supersedes: None }
    }

    fn recover_all(dir: &Path) -> Result<(Vec<u64>, u64), WalError> {
        let mut seen = Vec::new();
        let (_, next) = Wal::recover(dir, 1 << 20, 1, |r| {
            seen.push(r.lsn);
            Ok::<(), WalError>(())
        })?;
        Ok((seen, next))
    }

    #[test]
    fn torn_tail_is_cut_and_rotation_keeps_order() {
        let dir = std::env::temp_dir().join(format!("tollgate-wal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut wal, next) = Wal::recover(&dir, 200, 1, |_| Ok::<(), WalError>(())).unwrap();
        assert_eq!(next, 1);
        for lsn in 1..=5 {
            let mut buf = Vec::new();
            push_frame(&mut buf, &rec(lsn));
            wal.append(&buf, true).unwrap();
            wal.rotate_if_full(lsn + 1).unwrap();
        }
        assert!(wal.segment_count() > 2, "small segments rotate");
        // A torn frame at the end of the newest segment: half a record.
        let mut buf = Vec::new();
        push_frame(&mut buf, &rec(6));
        wal.append(&buf[..buf.len() / 2], true).unwrap();
        drop(wal);
        let (seen, next) = recover_all(&dir).unwrap();
        assert_eq!(seen, vec![1, 2, 3, 4, 5]);
        assert_eq!(next, 6);
        // Recovery opened segment 6; removing through 3 keeps 4 and 5.
        let (mut wal, _) = Wal::recover(&dir, 200, 1, |_| Ok::<(), WalError>(())).unwrap();
        wal.remove_through(3).unwrap();
        let (seen, _) = recover_all(&dir).unwrap();
        assert_eq!(seen.first(), Some(&4));
        assert_eq!(seen.last(), Some(&5));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn damage_in_an_older_segment_refuses_to_start() {
        let dir = std::env::temp_dir().join(format!("tollgate-wal-corrupt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut wal, _) = Wal::recover(&dir, 100, 1, |_| Ok::<(), WalError>(())).unwrap();
        for lsn in 1..=3 {
            let mut buf = Vec::new();
            push_frame(&mut buf, &rec(lsn));
            wal.append(&buf, true).unwrap();
            wal.rotate_if_full(lsn + 1).unwrap();
        }
        drop(wal);
        let first = segment_path(&dir, 1);
        let mut bytes = std::fs::read(&first).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&first, bytes).unwrap();
        match recover_all(&dir) {
            Err(WalError::Corrupt { offset: 0, reason: FrameError::Checksum, .. }) => {}
            other => panic!("expected corruption, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
