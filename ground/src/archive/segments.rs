//! Large envelopes (chips and thumbnails: most of the downlink's bytes) kept in append-only
//! segment files beside the `sled` database, the database holding only where each one is. `sled`
//! writes a value several times over (its log, then its pages); a segment once, sequentially.
//!
//! Durability: bytes are appended, then the database's transaction names them, then `sync` (the
//! segments) comes before the database's flush, so a durable name always points at durable bytes.
//! A crash between the append and the flush leaves bytes that nothing names: space lost, never a
//! product. Every span carries the CRC-32 of its bytes, checked on each read.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A segment is closed and the next begun past this size.
const SEGMENT_MAX: u64 = 1 << 30;
/// What a database value that names a span begins with (a stored envelope begins with "KP").
const SPAN_TAG: &[u8; 2] = b"KS";
const SPAN_LEN: usize = 2 + 4 + 8 + 4 + 4;

/// Where one envelope lies: segment number, offset, length, and the CRC-32 of its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    segment: u32,
    offset: u64,
    len: u32,
    crc: u32,
}

impl Span {
    /// The database value that names this span.
    pub fn to_value(self) -> Vec<u8> {
        let mut value = Vec::with_capacity(SPAN_LEN);
        value.extend_from_slice(SPAN_TAG);
        value.extend_from_slice(&self.segment.to_be_bytes());
        value.extend_from_slice(&self.offset.to_be_bytes());
        value.extend_from_slice(&self.len.to_be_bytes());
        value.extend_from_slice(&self.crc.to_be_bytes());
        value
    }

    /// The span a database value names, or `None` when the value is the envelope itself.
    pub fn from_value(value: &[u8]) -> Option<Self> {
        if value.len() != SPAN_LEN || &value[..2] != SPAN_TAG {
            return None;
        }
        let be32 = |at: usize| u32::from_be_bytes([value[at], value[at + 1], value[at + 2], value[at + 3]]);
        let offset = u64::from_be_bytes(value[6..14].try_into().ok()?);
        Some(Self { segment: be32(2), offset, len: be32(14), crc: be32(18) })
    }

    pub fn len(self) -> usize {
        self.len as usize
    }

    pub fn crc(self) -> u32 {
        self.crc
    }
}

#[derive(Debug)]
struct Writer {
    number: u32,
    file: File,
    len: u64,
    /// Segments closed since the last sync: they need theirs too.
    closed_unsynced: Vec<File>,
}

#[derive(Debug)]
pub struct Segments {
    dir: PathBuf,
    writer: Mutex<Writer>,
}

fn segment_path(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("segment-{number:06}"))
}

fn open_for_append(dir: &Path, number: u32) -> std::io::Result<(File, u64)> {
    let file =
        OpenOptions::new().create(true).read(true).write(true).truncate(false).open(segment_path(dir, number))?;
    let len = file.metadata()?.len();
    Ok((file, len))
}

impl Segments {
    /// Opens the segments in `dir` (made if missing), appending to the newest.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut newest = 1;
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            if let Some(number) = name.to_str().and_then(|n| n.strip_prefix("segment-")).and_then(|n| n.parse().ok()) {
                newest = newest.max(number);
            }
        }
        let (file, len) = open_for_append(dir, newest)?;
        let writer = Writer { number: newest, file, len, closed_unsynced: Vec::new() };
        Ok(Self { dir: dir.to_owned(), writer: Mutex::new(writer) })
    }

    /// Appends `bytes` (not yet durable: see `sync`).
    pub fn append(&self, bytes: &[u8], crc: u32) -> std::io::Result<Span> {
        let len = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("an envelope over 4 GiB"))?;
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        if writer.len > 0 && writer.len + u64::from(len) > SEGMENT_MAX {
            let (file, start) = open_for_append(&self.dir, writer.number + 1)?;
            let closed = std::mem::replace(&mut writer.file, file);
            writer.closed_unsynced.push(closed);
            writer.number += 1;
            writer.len = start;
        }
        let offset = writer.len;
        writer.file.write_all_at(bytes, offset)?;
        writer.len += u64::from(len);
        Ok(Span { segment: writer.number, offset, len, crc })
    }

    /// Makes every append so far durable.
    pub fn sync(&self) -> std::io::Result<()> {
        let mut writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        for closed in writer.closed_unsynced.drain(..) {
            closed.sync_data()?;
        }
        writer.file.sync_data()
    }

    /// The bytes of a span, checked against its CRC.
    pub fn read(&self, span: Span, crc_of: impl Fn(&[u8]) -> u32) -> std::io::Result<Vec<u8>> {
        let path = segment_path(&self.dir, span.segment);
        let at = |e: std::io::Error| {
            std::io::Error::new(e.kind(), format!("{} at byte {}: {e}", path.display(), span.offset))
        };
        let file = File::open(&path).map_err(at)?;
        let mut bytes = vec![0u8; span.len as usize];
        file.read_exact_at(&mut bytes, span.offset).map_err(at)?;
        let found = crc_of(&bytes);
        if found != span.crc {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} at byte {}: {} bytes with CRC-32 {found:08x}, expected {:08x}",
                    path.display(),
                    span.offset,
                    span.len,
                    span.crc
                ),
            ));
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc(bytes: &[u8]) -> u32 {
        crate::archive::envelope_crc(bytes)
    }

    #[test]
    fn spans_read_back_across_reopening_and_a_damaged_span_is_an_error_that_says_where() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (vec![7u8; 30_000], vec![9u8; 50_000]);
        let spans = {
            let segments = Segments::open(dir.path()).expect("open");
            let spans = [segments.append(&a, crc(&a)).expect("append"), segments.append(&b, crc(&b)).expect("append")];
            segments.sync().expect("sync");
            spans
        };
        let segments = Segments::open(dir.path()).expect("reopen");
        let c = segments.append(b"KPmore", crc(b"KPmore")).expect("append after reopening");
        assert_eq!(c.offset, 80_000, "appends go on where the segment ended");
        assert_eq!(segments.read(spans[0], crc).expect("read"), a);
        assert_eq!(segments.read(spans[1], crc).expect("read"), b);
        assert_eq!(Span::from_value(&spans[1].to_value()), Some(spans[1]));
        assert_eq!(Span::from_value(b"KP-an-envelope-itself"), None);

        let file = OpenOptions::new().write(true).open(segment_path(dir.path(), 1)).expect("segment");
        file.write_all_at(&[0], 30_010).expect("damage");
        let error = segments.read(spans[1], crc).expect_err("damage is found").to_string();
        assert!(error.contains("segment-000001 at byte 30000") && error.contains("CRC-32"), "{error}");
    }
}
