//! The product archive. `sled` embedded by default: a product is stored with its metadata and its
//! detections in one transaction, keyed by its stable id, so a product that arrives twice (a
//! second station, a resend after a lost acknowledgement) is stored once.

use std::path::Path;

use kestrel_link::product::{Body, Envelope, Kind, Product};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// What storing a product did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// New in the archive.
    Inserted,
    /// Already there, byte for byte.
    Duplicate,
    /// Already there with other content under the same id: kept as it was, and reported.
    Conflict,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive `{path}`: {source}")]
    Open { path: String, source: sled::Error },
    #[error("archive: {0}")]
    Sled(#[from] sled::Error),
    #[error("archive record {key} does not decode: {message}")]
    Corrupt { key: String, message: String },
}

/// What the archive keeps about a product besides its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductRecord {
    pub id: u64,
    pub kind: Kind,
    pub created_ms: i64,
    pub content_crc: u32,
    pub size: u64,
    /// The station that delivered it first.
    pub station: String,
    pub received_unix_ms: i64,
}

/// One detection as the archive indexes it (by frame time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionRecord {
    pub product_id: u64,
    pub frame_id: u64,
    pub frame_time_ms: i64,
    pub model: String,
    pub class_name: String,
    pub score: f32,
    pub pixel_box: [f32; 4],
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Debug, Clone)]
pub struct SledArchive {
    db: sled::Db,
    products: sled::Tree,
    records: sled::Tree,
    detections: sled::Tree,
    meta: sled::Tree,
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

impl SledArchive {
    pub fn open(path: &Path) -> Result<Self, ArchiveError> {
        let db = sled::open(path).map_err(|source| ArchiveError::Open { path: path.display().to_string(), source })?;
        Ok(Self {
            products: db.open_tree("products")?,
            records: db.open_tree("records")?,
            detections: db.open_tree("detections")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    /// Stores a verified product (its envelope bytes as received, and what indexes it).
    pub fn store(
        &self,
        product: &Product,
        bytes: &[u8],
        station: &str,
        received_unix_ms: i64,
    ) -> Result<Stored, ArchiveError> {
        let envelope = Envelope::parse(bytes)
            .map_err(|e| ArchiveError::Corrupt { key: product.id.to_string(), message: e.to_string() })?;
        let key = product.id.to_be_bytes();
        let record = ProductRecord {
            id: product.id,
            kind: envelope.kind,
            created_ms: product.created_ms,
            content_crc: envelope.content_crc,
            size: bytes.len() as u64,
            station: station.to_owned(),
            received_unix_ms,
        };
        let detections: Vec<([u8; 20], Vec<u8>)> = match &product.body {
            Body::Detections(set) => set
                .detections
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    let record = DetectionRecord {
                        product_id: product.id,
                        frame_id: set.frame_id,
                        frame_time_ms: set.frame_time_ms,
                        model: set.model.clone(),
                        class_name: d.class_name.clone(),
                        score: d.score,
                        pixel_box: d.pixel_box,
                        latitude: d.latitude,
                        longitude: d.longitude,
                    };
                    (detection_key(set.frame_time_ms, product.id, i as u32), encode(&record))
                })
                .collect(),
            _ => Vec::new(),
        };
        let record_bytes = encode(&record);
        let outcome = (&self.products, &self.records, &self.detections).transaction(|(products, records, index)| {
            if let Some(existing) = products.get(key)? {
                return Ok(if existing.as_ref() == bytes { Stored::Duplicate } else { Stored::Conflict });
            }
            products.insert(&key, bytes)?;
            records.insert(&key, record_bytes.as_slice())?;
            for (k, v) in &detections {
                index.insert(k, v.as_slice())?;
            }
            Ok::<_, ConflictableTransactionError<()>>(Stored::Inserted)
        });
        let outcome = outcome.map_err(|e| match e {
            TransactionError::Storage(e) => ArchiveError::Sled(e),
            TransactionError::Abort(()) => {
                ArchiveError::Corrupt { key: product.id.to_string(), message: "aborted".into() }
            }
        })?;
        if outcome == Stored::Inserted {
            self.db.flush()?;
        }
        Ok(outcome)
    }

    pub fn product_count(&self) -> usize {
        self.products.len()
    }

    pub fn detection_count(&self) -> usize {
        self.detections.len()
    }

    /// The stored envelope of a product.
    pub fn product_bytes(&self, id: u64) -> Result<Option<Vec<u8>>, ArchiveError> {
        Ok(self.products.get(id.to_be_bytes())?.map(|v| v.to_vec()))
    }

    /// Product records in id order, from `after` (exclusive), at most `limit`.
    pub fn records(&self, after: Option<u64>, limit: usize) -> Result<Vec<ProductRecord>, ArchiveError> {
        let start = after.map_or(0, |a| a.saturating_add(1));
        let mut out = Vec::new();
        for entry in self.records.range(start.to_be_bytes()..).take(limit) {
            let (key, value) = entry?;
            out.push(
                postcard::from_bytes(&value)
                    .map_err(|e| ArchiveError::Corrupt { key: format!("{key:?}"), message: e.to_string() })?,
            );
        }
        Ok(out)
    }

    /// Detections with frame times in [from_ms, to_ms), in time order, at most `limit`.
    pub fn detections(&self, from_ms: i64, to_ms: i64, limit: usize) -> Result<Vec<DetectionRecord>, ArchiveError> {
        let range = detection_key(from_ms, 0, 0)..detection_key(to_ms, 0, 0);
        let mut out = Vec::new();
        for entry in self.detections.range(range).take(limit) {
            let (key, value) = entry?;
            out.push(
                postcard::from_bytes(&value)
                    .map_err(|e| ArchiveError::Corrupt { key: format!("{key:?}"), message: e.to_string() })?,
            );
        }
        Ok(out)
    }

    /// Reserves `count` anti-replay sequence numbers for the uplink and returns the first. The
    /// reservation is durable before it returns, so a restart never reuses a number (reusing one
    /// would reuse an AES-GCM IV).
    pub fn reserve_uplink_arsns(&self, count: u64) -> Result<u64, ArchiveError> {
        let key = b"uplink_next_arsn";
        let mut first = 0;
        self.meta.fetch_and_update(key, |old| {
            first = old.map_or(1, |v| u64::from_be_bytes(v.try_into().unwrap_or([0; 8])).max(1));
            Some((first + count).to_be_bytes().to_vec())
        })?;
        self.meta.flush()?;
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kestrel_link::product::{Detection, Detections};

    fn detections(id: u64, time: i64, n: usize) -> Product {
        Product {
            id,
            created_ms: time,
            body: Body::Detections(Detections {
                frame_id: id,
                frame_time_ms: time,
                model: "m".into(),
                detections: (0..n)
                    .map(|i| Detection {
                        class_id: 0,
                        class_name: "vessel".into(),
                        score: 0.5 + i as f32 / 100.0,
                        pixel_box: [0.0, 0.0, 1.0, 1.0],
                        latitude: 1.0,
                        longitude: 2.0,
                    })
                    .collect(),
            }),
        }
    }

    #[test]
    fn a_product_is_stored_once_and_a_conflict_never_overwrites() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = SledArchive::open(dir.path()).expect("open");
        let product = detections(7, 1_000, 3);
        let bytes = product.encode().bytes;
        assert_eq!(archive.store(&product, &bytes, "a", 1).expect("store"), Stored::Inserted);
        assert_eq!(archive.store(&product, &bytes, "b", 2).expect("store"), Stored::Duplicate);
        let other = detections(7, 2_000, 1);
        assert_eq!(archive.store(&other, &other.encode().bytes, "b", 3).expect("store"), Stored::Conflict);
        assert_eq!((archive.product_count(), archive.detection_count()), (1, 3));
        assert_eq!(archive.product_bytes(7).expect("get"), Some(bytes));
        assert_eq!(archive.records(None, 10).expect("records")[0].station, "a");
    }

    #[test]
    fn detections_come_back_in_time_order_within_the_window() {
        let dir = tempfile::tempdir().expect("tempdir");
        let archive = SledArchive::open(dir.path()).expect("open");
        for (id, time) in [(1, 5_000), (2, -3_000), (3, 9_000)] {
            let p = detections(id, time, 2);
            archive.store(&p, &p.encode().bytes, "a", 0).expect("store");
        }
        let found = archive.detections(-10_000, 9_000, 100).expect("query");
        let times: Vec<i64> = found.iter().map(|d| d.frame_time_ms).collect();
        assert_eq!(times, vec![-3_000, -3_000, 5_000, 5_000]);
    }

    #[test]
    fn uplink_sequence_numbers_survive_a_reopen_without_reuse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = SledArchive::open(dir.path()).expect("open").reserve_uplink_arsns(100).expect("reserve");
        let again = SledArchive::open(dir.path()).expect("reopen").reserve_uplink_arsns(100).expect("reserve");
        assert_eq!((first, again), (1, 101));
    }
}
