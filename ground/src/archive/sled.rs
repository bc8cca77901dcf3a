//! The embedded archive on `sled`: one transaction per product over its envelope, its record and
//! its detections (indexed by frame time), keyed by the product's stable id.

use std::path::Path;

use kestrel_link::product::{Body, Product};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{
    Archive, ArchiveError, AuditEntry, DetectionCell, DetectionQuery, DetectionRecord, ProductRecord, Stored,
    TimelineQuery, cells_of, detection_records, record,
};

/// Version of the derived trees' layout (`detections`, `timeline`, `chips`); an archive written
/// with another is re-indexed from its products when opened.
const SCHEMA_VERSION: u32 = 2;
const SCHEMA_KEY: &[u8] = b"schema";

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
}

/// What a product adds to the derived trees.
struct IndexEntries {
    detections: Vec<([u8; 20], Vec<u8>)>,
    timeline: [u8; 17],
    chip: Option<[u8; 12]>,
}

impl IndexEntries {
    fn of(product: &Product) -> Self {
        let detections = detection_records(product)
            .iter()
            .map(|d| (detection_key(d.frame_time_ms, product.id, d.index), encode(d)))
            .collect();
        let chip = match &product.body {
            Body::Chip(chip) => Some(chip_key(chip.frame_id, chip.detection_index)),
            _ => None,
        };
        Self { detections, timeline: timeline_key(product.body.kind() as u8, product.created_ms, product.id), chip }
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
        let db = sled::open(path).map_err(open_error)?;
        let archive = Self {
            products: db.open_tree("products").map_err(open_error)?,
            records: db.open_tree("records").map_err(open_error)?,
            detections: db.open_tree("detections").map_err(open_error)?,
            meta: db.open_tree("meta").map_err(open_error)?,
            audit: db.open_tree("audit").map_err(open_error)?,
            conflicts: db.open_tree("conflicts").map_err(open_error)?,
            timeline: db.open_tree("timeline").map_err(open_error)?,
            chips: db.open_tree("chips").map_err(open_error)?,
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
        for tree in [&self.detections, &self.timeline, &self.chips] {
            tree.clear().map_err(storage)?;
        }
        for entry in self.products.iter() {
            let (key, bytes) = entry.map_err(storage)?;
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
        }
        self.meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes()).map_err(storage)?;
        self.db.flush().map_err(storage)?;
        Ok(())
    }
}

impl SledArchive {
    /// The detections that pass `query`'s filters, in frame-time order.
    fn matching<'a>(
        &'a self,
        query: &'a DetectionQuery,
    ) -> impl Iterator<Item = Result<DetectionRecord, ArchiveError>> + 'a {
        self.detections
            .range(detection_key(query.from_ms, 0, 0)..detection_key(query.to_ms, 0, 0))
            .map(|entry| entry.map_err(storage).and_then(|(key, value)| decode::<DetectionRecord>(&key, &value)))
            .filter(|found| found.as_ref().map_or(true, |d| query.admits(d)))
    }

    /// One product in one transaction (not yet flushed).
    fn insert(
        &self,
        product: &Product,
        bytes: &[u8],
        station: &str,
        received_unix_ms: i64,
    ) -> Result<Stored, ArchiveError> {
        let key = product.id.to_be_bytes();
        let record_bytes = encode(&record(product, bytes, station, received_unix_ms)?);
        let entries = IndexEntries::of(product);
        let crc = super::envelope_crc(bytes);
        let mut conflict_key = key.to_vec();
        conflict_key.extend(crc.to_be_bytes());
        let trees = (&self.products, &self.records, &self.detections, &self.conflicts, &self.timeline, &self.chips);
        let outcome = trees.transaction(|(products, records, index, conflicts, timeline, chips)| {
            if let Some(existing) = products.get(key)? {
                if existing.as_ref() == bytes {
                    return Ok(Stored::Duplicate);
                }
                conflicts.insert(conflict_key.as_slice(), bytes)?;
                return Ok(Stored::Conflict);
            }
            products.insert(&key, bytes)?;
            records.insert(&key, record_bytes.as_slice())?;
            for (k, v) in &entries.detections {
                index.insert(k, v.as_slice())?;
            }
            timeline.insert(&entries.timeline, &[])?;
            if let Some(k) = &entries.chip {
                chips.insert(k, &key)?;
            }
            Ok::<_, ConflictableTransactionError<()>>(Stored::Inserted)
        });
        outcome.map_err(|e| match e {
            TransactionError::Storage(e) => storage(e),
            TransactionError::Abort(()) => ArchiveError::Storage("transaction aborted".into()),
        })
    }
}

impl Archive for SledArchive {
    fn store_all(
        &self,
        arrivals: &[(&Product, &[u8])],
        station: &str,
        received_unix_ms: i64,
    ) -> Result<Vec<Stored>, ArchiveError> {
        let mut outcomes = Vec::with_capacity(arrivals.len());
        for &(product, bytes) in arrivals {
            outcomes.push(self.insert(product, bytes, station, received_unix_ms)?);
        }
        // one flush makes the whole batch durable
        if outcomes.iter().any(|o| matches!(o, Stored::Inserted | Stored::Conflict)) {
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
        Ok(self.products.get(id.to_be_bytes()).map_err(storage)?.map(|v| v.to_vec()))
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
        let all: Vec<DetectionRecord> = self.matching(query).collect::<Result<_, _>>()?;
        Ok(cells_of(all.iter(), cell_deg))
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
            Some(id) => self.products.get(&id).map(|bytes| bytes.map(|b| b.to_vec())).map_err(storage),
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

    fn audit_trail(&self, limit: usize) -> Result<Vec<AuditEntry>, ArchiveError> {
        self.audit
            .iter()
            .rev()
            .take(limit)
            .map(|entry| entry.map_err(storage).and_then(|(k, v)| decode(&k, &v)))
            .collect()
    }
}
