//! The embedded archive on `sled`: one transaction per product over its envelope, its record and
//! its detections (indexed by frame time), keyed by the product's stable id. Envelopes of
//! `SEGMENT_FROM` bytes or more (images) lie in append-only segment files, the tree naming where.

use std::path::Path;
use std::sync::Arc;

use kestrel_link::product::{Body, Product};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{
    Archive, ArchiveError, AuditEntry, DetectionCell, DetectionQuery, DetectionRecord, ProductRecord, Stored,
    TimelineQuery, cells_of, detection_records, envelope_crc, record, reported_command,
};
use crate::archive::segments::{Segments, Span};

/// Version of the derived trees' layout (`detections`, `timeline`, `chips`, `command_reports`); an archive written
/// with another is re-indexed from its products when opened.
const SCHEMA_VERSION: u32 = 6;
const SCHEMA_KEY: &[u8] = b"schema";
/// Contacts are kept in the meta tree under this prefix, each its begin time.
const CONTACT_PREFIX: &[u8] = b"contact/";
/// Envelopes this large or larger go to the segment files.
const SEGMENT_FROM: usize = 8 << 10;

#[derive(Debug, Clone)]
pub struct SledArchive {
    db: sled::Db,
    products: sled::Tree,
    records: sled::Tree,
    detections: sled::Tree,
    meta: sled::Tree,
    audit: sled::Tree,
    /// Envelopes that came under a stored id with other content, keyed by id and their CRC-32.
    conflicts: sled::Tree,
    /// Every product keyed by kind, creation time and id (values empty).
    timeline: sled::Tree,
    /// Chip product ids keyed by frame id and detection index.
    chips: sled::Tree,
    /// Command report product ids keyed by command id and product id (values empty).
    command_reports: sled::Tree,
    /// The ids of commands waiting for a station (u64 BE, values empty).
    command_queue: sled::Tree,
    segments: Arc<Segments>,
}

/// What a product adds to the derived trees.
struct IndexEntries {
    detections: Vec<([u8; DETECTION_KEY_LEN], Vec<u8>)>,
    timeline: [u8; 17],
    chip: Option<[u8; 12]>,
    command_report: Option<[u8; 16]>,
}

impl IndexEntries {
    fn of(product: &Product) -> Self {
        let detections = detection_records(product).iter().map(|d| (detection_entry_key(d), encode(d))).collect();
        let chip = match &product.body {
            Body::Chip(chip) => chip.detection().map(|index| chip_key(chip.frame_id, index)),
            _ => None,
        };
        let command_report = reported_command(product).map(|command| {
            let mut key = [0u8; 16];
            key[..8].copy_from_slice(&command.to_be_bytes());
            key[8..].copy_from_slice(&product.id.to_be_bytes());
            key
        });
        let timeline = timeline_key(product.body.kind() as u8, product.created_ms, product.id);
        Self { detections, timeline, chip, command_report }
    }
}

/// Times as big-endian keys that sort as the times do (sign bit flipped).
fn time_bytes(time_ms: i64) -> [u8; 8] {
    ((time_ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn timeline_key(kind: u8, time_ms: i64, product_id: u64) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[0] = kind;
    key[1..9].copy_from_slice(&time_bytes(time_ms));
    key[9..].copy_from_slice(&product_id.to_be_bytes());
    key
}

/// `downlink_arsn` | SPI | VCID: the downlink's anti-replay mark of one virtual channel.
fn replay_mark_key(spi: u16, vcid: u8) -> Vec<u8> {
    let mut key = b"downlink_arsn".to_vec();
    key.extend(spi.to_be_bytes());
    key.push(vcid);
    key
}

fn chip_key(frame_id: u64, index: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&frame_id.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// Detections are keyed by frame time (sign bit flipped so that keys sort as times), product and index.
fn detection_key(time_ms: i64, product_id: u64, index: u32) -> [u8; 20] {
    let mut key = [0u8; 20];
    key[..8].copy_from_slice(&time_bytes(time_ms));
    key[8..16].copy_from_slice(&product_id.to_be_bytes());
    key[16..].copy_from_slice(&index.to_be_bytes());
    key
}

/// A detection's key: the 20 bytes that order it, then its latitude and longitude (f64 BE), so a
/// box filter or a grid count reads the key alone and decodes no record.
const DETECTION_KEY_LEN: usize = 36;

fn detection_entry_key(d: &DetectionRecord) -> [u8; DETECTION_KEY_LEN] {
    let mut key = [0u8; DETECTION_KEY_LEN];
    key[..20].copy_from_slice(&detection_key(d.frame_time_ms, d.product_id, d.index));
    key[20..28].copy_from_slice(&d.latitude.to_be_bytes());
    key[28..].copy_from_slice(&d.longitude.to_be_bytes());
    key
}

/// The latitude and longitude a detection key carries.
fn key_position(key: &[u8]) -> Option<(f64, f64)> {
    let latitude = f64::from_be_bytes(key.get(20..28)?.try_into().ok()?);
    let longitude = f64::from_be_bytes(key.get(28..36)?.try_into().ok()?);
    Some((latitude, longitude))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // archive records are plain data: serializing them cannot fail
    postcard::to_stdvec(value).unwrap_or_default()
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, ArchiveError> {
    postcard::from_bytes(value)
        .map_err(|e| ArchiveError::Corrupt { key: format!("{key:02x?}"), message: e.to_string() })
}

fn storage(e: sled::Error) -> ArchiveError {
    ArchiveError::Storage(e.to_string())
}

impl SledArchive {
    pub fn open(path: &Path) -> Result<Self, ArchiveError> {
        let open_error =
            |e: sled::Error| ArchiveError::Open { location: path.display().to_string(), message: e.to_string() };
        let db = sled::Config::new().path(path).mode(sled::Mode::HighThroughput).open().map_err(open_error)?;
        let segments = Segments::open(&path.join("segments")).map_err(|e| ArchiveError::Open {
            location: path.join("segments").display().to_string(),
            message: e.to_string(),
        })?;
        let archive = Self {
            segments: Arc::new(segments),
            products: db.open_tree("products").map_err(open_error)?,
            records: db.open_tree("records").map_err(open_error)?,
            detections: db.open_tree("detections").map_err(open_error)?,
            meta: db.open_tree("meta").map_err(open_error)?,
            audit: db.open_tree("audit").map_err(open_error)?,
            conflicts: db.open_tree("conflicts").map_err(open_error)?,
            timeline: db.open_tree("timeline").map_err(open_error)?,
            chips: db.open_tree("chips").map_err(open_error)?,
            command_reports: db.open_tree("command_reports").map_err(open_error)?,
            command_queue: db.open_tree("command_queue").map_err(open_error)?,
            db,
        };
        let version = archive.meta.get(SCHEMA_KEY).map_err(open_error)?;
        if version.as_deref() != Some(&SCHEMA_VERSION.to_be_bytes()[..]) {
            archive.reindex().map_err(|e| ArchiveError::Open {
                location: path.display().to_string(),
                message: format!("re-indexing for schema {SCHEMA_VERSION}: {e}"),
            })?;
        }
        Ok(archive)
    }

    /// Rebuilds the derived trees from the stored products (the envelopes are the archive; the
    /// rest can always be made again from them).
    fn reindex(&self) -> Result<(), ArchiveError> {
        for tree in [&self.detections, &self.timeline, &self.chips, &self.command_reports] {
            tree.clear().map_err(storage)?;
        }
        for entry in self.products.iter() {
            let (key, value) = entry.map_err(storage)?;
            let bytes = self.envelope(&value)?;
            let product = Product::decode(&bytes)
                .map_err(|e| ArchiveError::Corrupt { key: format!("{key:02x?}"), message: e.to_string() })?;
            let entries = IndexEntries::of(&product);
            for (k, v) in entries.detections {
                self.detections.insert(k, v).map_err(storage)?;
            }
            self.timeline.insert(entries.timeline, &[]).map_err(storage)?;
            if let Some(k) = entries.chip {
                self.chips.insert(k, &key[..]).map_err(storage)?;
            }
            if let Some(k) = entries.command_report {
                self.command_reports.insert(k, &[]).map_err(storage)?;
            }
        }
        self.meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes()).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }
}

impl SledArchive {
    /// The keys of the detections in `query`'s time window whose position passes its box.
    fn in_window_and_box<'a>(
        &'a self,
        query: &'a DetectionQuery,
    ) -> impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>> + 'a {
        self.detections.range(detection_key(query.from_ms, 0, 0)..detection_key(query.to_ms, 0, 0)).filter(|entry| {
            entry
                .as_ref()
                .map_or(true, |(key, _)| key_position(key).is_none_or(|(lat, lon)| query.admits_position(lat, lon)))
        })
    }

    /// The detections that pass `query`'s filters, in frame-time order.
    fn matching<'a>(
        &'a self,
        query: &'a DetectionQuery,
    ) -> impl Iterator<Item = Result<DetectionRecord, ArchiveError>> + 'a {
        self.in_window_and_box(query)
            .map(|entry| entry.map_err(storage).and_then(|(key, value)| decode::<DetectionRecord>(&key, &value)))
            .filter(|found| found.as_ref().map_or(true, |d| query.admits(d)))
    }

    /// The envelope a `products` value holds or names.
    fn envelope(&self, value: &[u8]) -> Result<Vec<u8>, ArchiveError> {
        match Span::from_value(value) {
            Some(span) => self.segments.read(span, envelope_crc).map_err(|e| ArchiveError::Storage(e.to_string())),
            None => Ok(value.to_vec()),
        }
    }

    /// Whether a `products` value holds or names exactly `bytes` (whose CRC-32 is `crc`).
    fn holds(&self, value: &[u8], bytes: &[u8], crc: u32) -> Result<bool, ArchiveError> {
        match Span::from_value(value) {
            Some(span) if span.len() != bytes.len() || span.crc() != crc => Ok(false),
            Some(_) => Ok(self.envelope(value)? == bytes),
            None => Ok(value == bytes),
        }
    }

    /// What storing one product writes, made ready outside the transaction (a new large
    /// envelope is appended to a segment here; a copy of a stored one never is).
    fn prepare(
        &self,
        product: &Product,
        bytes: &[u8],
        station: &str,
        received_unix_ms: i64,
    ) -> Result<Prepared, ArchiveError> {
        let key = product.id.to_be_bytes();
        let crc = envelope_crc(bytes);
        let new_large = bytes.len() >= SEGMENT_FROM && !self.products.contains_key(key).map_err(storage)?;
        let value = if new_large {
            self.segments.append(bytes, crc).map_err(|e| ArchiveError::Storage(e.to_string()))?.to_value()
        } else {
            bytes.to_vec()
        };
        let mut conflict_key = key.to_vec();
        conflict_key.extend(crc.to_be_bytes());
        Ok(Prepared {
            key,
            crc,
            value,
            conflict_key,
            record: encode(&record(product, bytes, station, received_unix_ms)?),
            entries: IndexEntries::of(product),
        })
    }
}

/// One product's writes, ready for the batch's transaction.
struct Prepared {
    key: [u8; 8],
    crc: u32,
    /// The envelope, or the span of the segment that holds it.
    value: Vec<u8>,
    conflict_key: Vec<u8>,
    record: Vec<u8>,
    entries: IndexEntries,
}

impl Archive for SledArchive {
    fn store_all(
        &self,
        arrivals: &[(&Product, &[u8])],
        station: &str,
        received_unix_ms: i64,
    ) -> Result<Vec<Stored>, ArchiveError> {
        let prepared = arrivals
            .iter()
            .map(|&(product, bytes)| self.prepare(product, bytes, station, received_unix_ms))
            .collect::<Result<Vec<_>, _>>()?;
        // one transaction for the batch: sled's cost is per transaction far more than per write
        let trees = (
            &self.products,
            &self.records,
            &self.detections,
            &self.conflicts,
            &self.timeline,
            &self.chips,
            &self.command_reports,
        );
        let outcomes = trees
            .transaction(|(products, records, index, conflicts, timeline, chips, reports)| {
                let mut outcomes = Vec::with_capacity(prepared.len());
                for (p, &(_, bytes)) in prepared.iter().zip(arrivals) {
                    if let Some(existing) = products.get(p.key)? {
                        if self.holds(&existing, bytes, p.crc).map_err(ConflictableTransactionError::Abort)? {
                            outcomes.push(Stored::Duplicate);
                        } else {
                            conflicts.insert(p.conflict_key.as_slice(), bytes)?;
                            outcomes.push(Stored::Conflict);
                        }
                        continue;
                    }
                    products.insert(&p.key, p.value.as_slice())?;
                    records.insert(&p.key, p.record.as_slice())?;
                    for (k, v) in &p.entries.detections {
                        index.insert(&k[..], v.as_slice())?;
                    }
                    timeline.insert(&p.entries.timeline, &[])?;
                    if let Some(k) = &p.entries.chip {
                        chips.insert(k, &p.key)?;
                    }
                    if let Some(k) = &p.entries.command_report {
                        reports.insert(&k[..], &[])?;
                    }
                    outcomes.push(Stored::Inserted);
                }
                Ok(outcomes)
            })
            .map_err(|e| match e {
                TransactionError::Storage(e) => storage(e),
                TransactionError::Abort(e) => e,
            })?;
        // one sync and one flush make the whole batch durable: segments first, so that what the
        // database names is on disk before the name is
        if outcomes.iter().any(|o| matches!(o, Stored::Inserted | Stored::Conflict)) {
            self.segments.sync().map_err(|e| ArchiveError::Storage(e.to_string()))?;
            self.db.flush().map_err(storage)?;
        }
        Ok(outcomes)
    }

    fn product_count(&self) -> Result<u64, ArchiveError> {
        Ok(self.products.len() as u64)
    }

    fn detection_count(&self) -> Result<u64, ArchiveError> {
        Ok(self.detections.len() as u64)
    }

    fn product_bytes(&self, id: u64) -> Result<Option<Vec<u8>>, ArchiveError> {
        self.products.get(id.to_be_bytes()).map_err(storage)?.map(|value| self.envelope(&value)).transpose()
    }

    fn records(&self, after: Option<u64>, limit: usize) -> Result<Vec<ProductRecord>, ArchiveError> {
        let start = match after {
            Some(u64::MAX) => return Ok(Vec::new()),
            Some(a) => a + 1,
            None => 0,
        };
        self.records
            .range(start.to_be_bytes()..)
            .take(limit)
            .map(|entry| entry.map_err(storage).and_then(|(k, v)| decode(&k, &v)))
            .collect()
    }

    fn detections(&self, query: &DetectionQuery) -> Result<Vec<DetectionRecord>, ArchiveError> {
        self.matching(query).skip(query.offset).take(query.limit).collect()
    }

    fn detection_cells(&self, query: &DetectionQuery, cell_deg: f64) -> Result<Vec<DetectionCell>, ArchiveError> {
        let positions: Vec<(f64, f64)> = if query.class.is_none() {
            // the keys say all a count needs
            self.in_window_and_box(query)
                .map(|entry| {
                    let (key, _) = entry.map_err(storage)?;
                    key_position(&key).ok_or_else(|| ArchiveError::Corrupt {
                        key: format!("{key:02x?}"),
                        message: "a detection key without its position".into(),
                    })
                })
                .collect::<Result<_, _>>()?
        } else {
            self.matching(query).map(|d| d.map(|d| (d.latitude, d.longitude))).collect::<Result<_, _>>()?
        };
        Ok(cells_of(positions.into_iter(), cell_deg))
    }

    fn timeline(&self, query: &TimelineQuery) -> Result<Vec<Vec<u8>>, ArchiveError> {
        let kind = query.kind as u8;
        let range = self.timeline.range(timeline_key(kind, query.from_ms, 0)..timeline_key(kind, query.to_ms, 0));
        let keys: Box<dyn Iterator<Item = _>> =
            if query.newest_first { Box::new(range.rev()) } else { Box::new(range) };
        keys.take(query.limit)
            .filter_map(|entry| match entry {
                Err(e) => Some(Err(storage(e))),
                Ok((key, _)) => {
                    let id = key[9..].try_into().map(u64::from_be_bytes).unwrap_or_default();
                    self.product_bytes(id).transpose()
                }
            })
            .collect()
    }

    fn chip(&self, frame_id: u64, index: u32) -> Result<Option<Vec<u8>>, ArchiveError> {
        match self.chips.get(chip_key(frame_id, index)).map_err(storage)? {
            Some(id) => match id.as_ref().try_into() {
                Ok(id) => self.product_bytes(u64::from_be_bytes(id)),
                Err(_) => Err(ArchiveError::Corrupt {
                    key: format!("chip {frame_id}/{index}"),
                    message: "not a product id".into(),
                }),
            },
            None => Ok(None),
        }
    }

    fn reserve_uplink_arsns(&self, count: u64) -> Result<u64, ArchiveError> {
        let mut first = 0;
        self.meta
            .fetch_and_update(b"uplink_next_arsn", |old| {
                first = old.map_or(1, |v| u64::from_be_bytes(v.try_into().unwrap_or([0; 8])).max(1));
                Some((first + count).to_be_bytes().to_vec())
            })
            .map_err(storage)?;
        self.meta.flush().map_err(storage)?;
        Ok(first)
    }

    fn record_contact(&self, unix_ms: i64) -> Result<(), ArchiveError> {
        // keyed by a fresh id, so two contacts that begin in one millisecond are both kept
        let id = self.db.generate_id().map_err(storage)?;
        let mut key = CONTACT_PREFIX.to_vec();
        key.extend_from_slice(&id.to_be_bytes());
        self.meta.insert(key, &unix_ms.to_be_bytes()).map_err(storage)?;
        self.meta.flush().map_err(storage)?;
        Ok(())
    }

    fn contacts_since(&self, unix_ms: i64) -> Result<u64, ArchiveError> {
        let mut since = 0;
        for entry in self.meta.scan_prefix(CONTACT_PREFIX) {
            let (_, began) = entry.map_err(storage)?;
            let began = <[u8; 8]>::try_from(began.as_ref())
                .map(i64::from_be_bytes)
                .map_err(|_| ArchiveError::Storage("a contact's time in the archive is not 8 bytes".into()))?;
            since += u64::from(began > unix_ms);
        }
        Ok(since)
    }

    fn downlink_replay_marks(&self, spi: u16) -> Result<Vec<(u8, u64)>, ArchiveError> {
        let prefix = replay_mark_key(spi, 0);
        self.meta
            .scan_prefix(&prefix[..prefix.len() - 1])
            .map(|entry| {
                let (key, value) = entry.map_err(storage)?;
                let vcid = key.last().copied().unwrap_or_default();
                let mark = value.as_ref().try_into().map(u64::from_be_bytes).map_err(|_| {
                    ArchiveError::Storage(format!("the replay mark of virtual channel {vcid} is not 8 bytes"))
                })?;
                Ok((vcid, mark))
            })
            .collect()
    }

    fn raise_downlink_replay_marks(&self, spi: u16, marks: &[(u8, u64)]) -> Result<(), ArchiveError> {
        for &(vcid, mark) in marks {
            self.meta
                .fetch_and_update(replay_mark_key(spi, vcid), |old| {
                    let old = old.and_then(|v| v.try_into().ok()).map_or(0, u64::from_be_bytes);
                    Some(old.max(mark).to_be_bytes().to_vec())
                })
                .map_err(storage)?;
        }
        self.meta.flush().map_err(storage)?;
        Ok(())
    }

    fn audit(&self, entry: &AuditEntry) -> Result<u64, ArchiveError> {
        let id = self.db.generate_id().map_err(storage)? + 1;
        self.audit.insert(id.to_be_bytes(), encode(&AuditEntry { id, ..entry.clone() })).map_err(storage)?;
        self.audit.flush().map_err(storage)?;
        Ok(id)
    }

    fn conflicts(&self) -> Result<Vec<(u64, Vec<u8>)>, ArchiveError> {
        self.conflicts
            .iter()
            .map(|entry| {
                let (key, value) = entry.map_err(storage)?;
                let id = key.get(..8).and_then(|k| k.try_into().ok()).map(u64::from_be_bytes).unwrap_or_default();
                Ok((id, value.to_vec()))
            })
            .collect()
    }

    fn command_reports(&self, command_id: u64) -> Result<Vec<Vec<u8>>, ArchiveError> {
        self.command_reports
            .scan_prefix(command_id.to_be_bytes())
            .map(|entry| {
                let (key, _) = entry.map_err(storage)?;
                let product_id = key[8..].try_into().map(u64::from_be_bytes).map_err(|_| ArchiveError::Corrupt {
                    key: format!("command_reports {key:02x?}"),
                    message: "not a command id and a product id".into(),
                })?;
                self.product_bytes(product_id)?.ok_or_else(|| ArchiveError::Corrupt {
                    key: format!("command_reports {command_id}/{product_id}"),
                    message: "names a product the archive does not hold".into(),
                })
            })
            .collect()
    }

    fn audit_entry(&self, id: u64) -> Result<Option<AuditEntry>, ArchiveError> {
        let key = id.to_be_bytes();
        self.audit.get(key).map_err(storage)?.map(|value| decode(&key, &value)).transpose()
    }

    fn audit_of(&self, id: u64) -> Result<Vec<AuditEntry>, ArchiveError> {
        let prefix = super::audit_prefix(id);
        let mut entries = Vec::new();
        for entry in self.audit.range(id.to_be_bytes()..).take(super::AUDIT_FOLLOW_UP) {
            let entry = entry.map_err(storage).and_then(|(k, v)| decode::<AuditEntry>(&k, &v))?;
            if entry.id == id || entry.outcome.starts_with(&prefix) {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    fn enqueue_command(&self, id: u64) -> Result<(), ArchiveError> {
        self.command_queue.insert(id.to_be_bytes(), &[]).map_err(storage)?;
        self.command_queue.flush().map_err(storage)?;
        Ok(())
    }

    fn queued_commands(&self) -> Result<Vec<u64>, ArchiveError> {
        self.command_queue
            .iter()
            .keys()
            .map(|key| {
                let key = key.map_err(storage)?;
                key.as_ref().try_into().map(u64::from_be_bytes).map_err(|_| ArchiveError::Corrupt {
                    key: format!("command_queue {key:02x?}"),
                    message: "not a command id".into(),
                })
            })
            .collect()
    }

    fn dequeue_command(&self, id: u64) -> Result<bool, ArchiveError> {
        let taken = self.command_queue.remove(id.to_be_bytes()).map_err(storage)?.is_some();
        self.command_queue.flush().map_err(storage)?;
        Ok(taken)
    }

    fn audit_trail(&self, limit: usize) -> Result<Vec<AuditEntry>, ArchiveError> {
        self.audit
            .iter()
            .rev()
            .take(limit)
            .map(|entry| entry.map_err(storage).and_then(|(k, v)| decode(&k, &v)))
            .collect()
    }
}
