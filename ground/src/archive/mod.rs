//! The product archive. A product is stored with its record and its detections atomically, keyed
//! by its stable id, so a product that arrives twice (a second station, a second ground process,
//! a resend after a lost acknowledgement) is stored once. Two backends behind one trait: `sled`
//! embedded (the default) and PostgreSQL (one archive shared by a network of ground stations).

mod postgres;
mod segments;
mod sled;

use std::fmt::Debug;
use std::path::Path;

use kestrel_link::product::{Body, Envelope, Kind, Product};
use serde::{Deserialize, Serialize};

pub use self::postgres::PostgresArchive;
pub use self::sled::SledArchive;

/// What storing a product did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// New in the archive.
    Inserted,
    /// Already there, byte for byte.
    Duplicate,
    /// Already there with other content under the same id: the stored one is kept as it was,
    /// the newcomer kept aside among the conflicts (one of the two is corrupt, and an operator
    /// needs both to tell which), and reported.
    Conflict,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("archive `{location}`: {message}")]
    Open { location: String, message: String },
    #[error("archive: {0}")]
    Storage(String),
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
    /// Its place in its product (a chip of it carries the same index).
    pub index: u32,
    pub frame_id: u64,
    pub frame_time_ms: i64,
    pub model: String,
    pub class_name: String,
    pub score: f32,
    pub pixel_box: [f32; 4],
    pub latitude: f64,
    pub longitude: f64,
    /// The oriented box, from a model of oriented boxes.
    pub oriented: Option<kestrel_link::product::OrientedBox>,
}

/// One operator command in the audit trail: who, when, what, and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: u64,
    pub unix_ms: i64,
    pub operator: String,
    /// The command as the operator sent it (JSON).
    pub command: String,
    pub outcome: String,
}

/// Which detections a query wants; `Default` wants them all (up to 1000).
#[derive(Debug, Clone, PartialEq)]
pub struct DetectionQuery {
    /// Frame times in [from_ms, to_ms).
    pub from_ms: i64,
    pub to_ms: i64,
    /// Only this class.
    pub class: Option<String>,
    /// Only inside this box: west, south, east, north (degrees); west above east is a box across
    /// the antimeridian.
    pub bbox: Option<[f64; 4]>,
    /// Matches to pass over before the first returned (paging).
    pub offset: usize,
    pub limit: usize,
}

impl Default for DetectionQuery {
    fn default() -> Self {
        Self { from_ms: i64::MIN, to_ms: i64::MAX, class: None, bbox: None, offset: 0, limit: 1000 }
    }
}

/// Detections gathered in one cell of a latitude/longitude grid: how the console shows many at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionCell {
    /// Mean position of the cell's detections.
    pub latitude: f64,
    pub longitude: f64,
    pub count: u64,
}

/// Which products of one kind a timeline query wants, by creation time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimelineQuery {
    pub kind: Kind,
    /// Creation times in [from_ms, to_ms).
    pub from_ms: i64,
    pub to_ms: i64,
    pub limit: usize,
    /// The latest first (the console's event log and live plots want the latest).
    pub newest_first: bool,
}

impl DetectionQuery {
    /// Whether a detection passes the class and box filters (the time window is the backend's).
    pub fn admits(&self, d: &DetectionRecord) -> bool {
        self.class.as_ref().is_none_or(|c| c == &d.class_name) && self.admits_position(d.latitude, d.longitude)
    }

    /// Whether a position passes the box filter.
    pub fn admits_position(&self, latitude: f64, longitude: f64) -> bool {
        self.bbox.is_none_or(|[west, south, east, north]| {
            let across_antimeridian = west > east;
            let in_longitude = if across_antimeridian {
                longitude >= west || longitude <= east
            } else {
                (west..=east).contains(&longitude)
            };
            (south..=north).contains(&latitude) && in_longitude
        })
    }
}

/// Sums positions (latitude, longitude) into cells of `cell_deg` degrees (for backends without a
/// grouping query).
fn cells_of(positions: impl Iterator<Item = (f64, f64)>, cell_deg: f64) -> Vec<DetectionCell> {
    let mut cells: std::collections::BTreeMap<(i64, i64), (f64, f64, u64)> = std::collections::BTreeMap::new();
    for (latitude, longitude) in positions {
        let key = ((latitude / cell_deg).floor() as i64, (longitude / cell_deg).floor() as i64);
        let cell = cells.entry(key).or_default();
        cell.0 += latitude;
        cell.1 += longitude;
        cell.2 += 1;
    }
    cells
        .into_values()
        .map(|(lat, lon, count)| DetectionCell { latitude: lat / count as f64, longitude: lon / count as f64, count })
        .collect()
}

/// The archive, whichever the backend.
pub trait Archive: Send + Sync + Debug {
    /// Stores verified products (each with its envelope bytes as received, and what indexes it),
    /// each atomically; all are durable when this returns, so they may be acknowledged.
    fn store_all(
        &self,
        arrivals: &[(&Product, &[u8])],
        station: &str,
        received_unix_ms: i64,
    ) -> Result<Vec<Stored>, ArchiveError>;
    /// Stores one verified product, durably.
    fn store(
        &self,
        product: &Product,
        bytes: &[u8],
        station: &str,
        received_unix_ms: i64,
    ) -> Result<Stored, ArchiveError> {
        let stored = self.store_all(&[(product, bytes)], station, received_unix_ms)?;
        stored.into_iter().next().ok_or_else(|| ArchiveError::Storage("a store returned nothing".into()))
    }
    fn product_count(&self) -> Result<u64, ArchiveError>;
    fn detection_count(&self) -> Result<u64, ArchiveError>;
    /// The stored envelope of a product.
    fn product_bytes(&self, id: u64) -> Result<Option<Vec<u8>>, ArchiveError>;
    /// Product records in id order, from `after` (exclusive), at most `limit`.
    fn records(&self, after: Option<u64>, limit: usize) -> Result<Vec<ProductRecord>, ArchiveError>;
    /// Detections that match `query`, in frame-time order.
    fn detections(&self, query: &DetectionQuery) -> Result<Vec<DetectionRecord>, ArchiveError>;
    /// Detections that match `query` (its offset and limit aside), counted in cells of
    /// `cell_deg` degrees.
    fn detection_cells(&self, query: &DetectionQuery, cell_deg: f64) -> Result<Vec<DetectionCell>, ArchiveError>;
    /// The stored envelopes of the products a timeline query wants.
    fn timeline(&self, query: &TimelineQuery) -> Result<Vec<Vec<u8>>, ArchiveError>;
    /// The stored envelope of the chip of detection `index` of frame `frame_id`.
    fn chip(&self, frame_id: u64, index: u32) -> Result<Option<Vec<u8>>, ArchiveError>;
    /// Reserves `count` anti-replay sequence numbers for the uplink and returns the first. Durable
    /// before it returns, and shared by every ground process on the archive, so no number is ever
    /// used twice (that would reuse an AES-GCM IV).
    fn reserve_uplink_arsns(&self, count: u64) -> Result<u64, ArchiveError>;
    /// Whether other ground processes may use this archive at the same time (and so take uplink
    /// sequence numbers from it): then each uplink takes its numbers when it is sent, never a
    /// block ahead, so that the processes' frames reach the spacecraft in ARSN order.
    fn is_shared(&self) -> bool {
        false
    }
    /// The downlink's anti-replay marks under security association `spi`: per virtual channel, the
    /// highest sequence number accepted by any connection of any ground process on the archive.
    /// A new station connection refuses every frame at or below them, so a recorded downlink
    /// replayed later is refused however it arrives.
    fn downlink_replay_marks(&self, spi: u16) -> Result<Vec<(u8, u64)>, ArchiveError>;
    /// Raises the marks under `spi` to `marks` where they are higher (never lowers one), durably.
    fn raise_downlink_replay_marks(&self, spi: u16, marks: &[(u8, u64)]) -> Result<(), ArchiveError>;
    /// Appends an entry (its `id` is assigned here) to the audit trail, durably; returns the id.
    fn audit(&self, entry: &AuditEntry) -> Result<u64, ArchiveError>;
    /// The latest `limit` audit entries, newest first.
    fn audit_trail(&self, limit: usize) -> Result<Vec<AuditEntry>, ArchiveError>;
    /// Records a contact (a station signed on, to any process on the archive) that began at
    /// `unix_ms`, durably.
    fn record_contact(&self, unix_ms: i64) -> Result<(), ArchiveError>;
    /// How many recorded contacts began after `unix_ms`.
    fn contacts_since(&self, unix_ms: i64) -> Result<u64, ArchiveError>;
    /// Puts command `id` (its audit entry holds it) in the queue of commands waiting for a
    /// station, durably.
    fn enqueue_command(&self, id: u64) -> Result<(), ArchiveError>;
    /// The ids of the commands waiting for a station, oldest first.
    fn queued_commands(&self) -> Result<Vec<u64>, ArchiveError>;
    /// Takes command `id` out of the queue, durably; false if it was not there (sent or cancelled
    /// already, by this process or another sharing the archive: one of them takes it).
    fn dequeue_command(&self, id: u64) -> Result<bool, ArchiveError>;
    /// The audit entry `id`, if there is one.
    fn audit_entry(&self, id: u64) -> Result<Option<AuditEntry>, ArchiveError>;
    /// The audit entries of command `id`: its own (submitted), then those the ground wrote about
    /// it (each an outcome beginning `command ID:`), oldest first.
    fn audit_of(&self, id: u64) -> Result<Vec<AuditEntry>, ArchiveError>;
    /// The stored envelopes of the spacecraft's verification reports of command `command_id`.
    fn command_reports(&self, command_id: u64) -> Result<Vec<Vec<u8>>, ArchiveError>;
    /// The envelopes that arrived under an id already stored with other content: (id, envelope),
    /// each distinct content once.
    fn conflicts(&self) -> Result<Vec<(u64, Vec<u8>)>, ArchiveError>;
}

/// CRC-32 of a whole envelope: what tells conflicting arrivals under one id apart.
pub(crate) fn envelope_crc(bytes: &[u8]) -> u32 {
    kestrel_link::product::crc32(bytes)
}

/// Opens the archive `store` names: a `postgres://` URL, or a folder for `sled`.
pub fn open(store: &str) -> Result<Box<dyn Archive>, ArchiveError> {
    if store.starts_with("postgres://") || store.starts_with("postgresql://") {
        Ok(Box::new(PostgresArchive::connect(store, None)?))
    } else {
        Ok(Box::new(SledArchive::open(Path::new(store))?))
    }
}

/// The record of a product about to be stored.
fn record(
    product: &Product,
    bytes: &[u8],
    station: &str,
    received_unix_ms: i64,
) -> Result<ProductRecord, ArchiveError> {
    let envelope = Envelope::parse(bytes)
        .map_err(|e| ArchiveError::Corrupt { key: product.id.to_string(), message: e.to_string() })?;
    Ok(ProductRecord {
        id: product.id,
        kind: envelope.kind,
        created_ms: product.created_ms,
        content_crc: envelope.content_crc,
        size: bytes.len() as u64,
        station: station.to_owned(),
        received_unix_ms,
    })
}

/// How the ground's audit entries about command `id` begin (`Service::send_command` writes them).
pub fn audit_prefix(id: u64) -> String {
    format!("command {id}:")
}

/// Audit entries written about a command after its own come within this many entries of it.
const AUDIT_FOLLOW_UP: usize = 10_000;

/// The command a product reports on, if it is a command report.
fn reported_command(product: &Product) -> Option<u64> {
    match &product.body {
        Body::CommandReport(report) => Some(report.command_id),
        _ => None,
    }
}

/// The detections a product carries, as the archive indexes them.
fn detection_records(product: &Product) -> Vec<DetectionRecord> {
    match &product.body {
        Body::Detections(set) => set
            .detections
            .iter()
            .enumerate()
            .map(|(index, d)| DetectionRecord {
                product_id: product.id,
                index: index as u32,
                frame_id: set.frame_id,
                frame_time_ms: set.frame_time_ms,
                model: set.model.clone(),
                class_name: d.class_name.clone(),
                score: d.score,
                pixel_box: d.pixel_box,
                latitude: d.latitude,
                longitude: d.longitude,
                oriented: set.oriented.get(index).copied(),
            })
            .collect(),
        _ => Vec::new(),
    }
}
