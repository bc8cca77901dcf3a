//! The embedded archive on `sled`: one transaction per product over its envelope, its record and
//! its detections (indexed by frame time), keyed by the product's stable id.

use std::path::Path;

use kestrel_link::product::Product;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{
    Archive, ArchiveError, AuditEntry, DetectionQuery, DetectionRecord, ProductRecord, Stored, detection_records,
    record,
};

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
}

/// Detections are keyed by frame time (sign bit flipped so that keys sort as times), product and index.
fn detection_key(time_ms: i64, product_id: u64, index: u32) -> [u8; 20] {
    let mut key = [0u8; 20];
    key[..8].copy_from_slice(&((time_ms as u64) ^ (1 << 63)).to_be_bytes());
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
        Ok(Self {
            products: db.open_tree("products").map_err(open_error)?,
            records: db.open_tree("records").map_err(open_error)?,
            detections: db.open_tree("detections").map_err(open_error)?,
            meta: db.open_tree("meta").map_err(open_error)?,
            audit: db.open_tree("audit").map_err(open_error)?,
            conflicts: db.open_tree("conflicts").map_err(open_error)?,
            db,
        })
    }
}

impl SledArchive {
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
        let detections: Vec<([u8; 20], Vec<u8>)> = detection_records(product)
            .iter()
            .enumerate()
            .map(|(i, d)| (detection_key(d.frame_time_ms, product.id, i as u32), encode(d)))
            .collect();
        let crc = super::envelope_crc(bytes);
        let mut conflict_key = key.to_vec();
        conflict_key.extend(crc.to_be_bytes());
        let trees = (&self.products, &self.records, &self.detections, &self.conflicts);
        let outcome = trees.transaction(|(products, records, index, conflicts)| {
            if let Some(existing) = products.get(key)? {
                if existing.as_ref() == bytes {
                    return Ok(Stored::Duplicate);
                }
                conflicts.insert(conflict_key.as_slice(), bytes)?;
                return Ok(Stored::Conflict);
            }
            products.insert(&key, bytes)?;
            records.insert(&key, record_bytes.as_slice())?;
            for (k, v) in &detections {
                index.insert(k, v.as_slice())?;
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
        let mut found = Vec::new();
        for entry in self.detections.range(detection_key(query.from_ms, 0, 0)..detection_key(query.to_ms, 0, 0)) {
            if found.len() >= query.limit {
                break;
            }
            let (key, value) = entry.map_err(storage)?;
            let detection: DetectionRecord = decode(&key, &value)?;
            if query.admits(&detection) {
                found.push(detection);
            }
        }
        Ok(found)
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
