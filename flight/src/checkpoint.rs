//! The flight checkpoint: every state change of the pipeline (frame claimed → tiles → products →
//! queued → sent → acknowledged → pruned) is one `sled` transaction, so a restart resumes exactly
//! where the last one stopped.
//!
//! Nothing read back is trusted blindly: every record carries a CRC-32 of its bytes, and a seal
//! file outside the database holds the number of the last commit made durable. Opening checks
//! every record and that the database still holds the sealed commit, so a checkpoint file with
//! flipped bits or a lost tail (which sled's own recovery would quietly cut short) is detected,
//! never used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kestrel_link::encoder::EncoderState;
use kestrel_link::uplink::{Mode, Telecommand};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::detect::Candidate;

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
const STATE_KEY: &[u8] = b"state";
const LAYOUT_KEY: &[u8] = b"layout";
/// The layout of the checkpoint's records. postcard writes no field names, so a field added to a
/// record (a new counter in the flight state) shifts everything after it, and an older record
/// may still decode, wrongly: raised with every change to a record type, and a checkpoint of
/// another layout is refused as a whole rather than read.
pub const LAYOUT: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint `{path}`: {message}")]
    Storage { path: PathBuf, message: String },
    #[error("checkpoint `{path}` is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "checkpoint `{path}` has record layout {}, this build reads layout {LAYOUT}",
        .found.map_or_else(|| "1 (written before layouts were recorded)".to_owned(), |f| f.to_string())
    )]
    Layout { path: PathBuf, found: Option<u32> },
}

/// Where a frame is in the pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FrameState {
    /// Recorded with its checksum and moved on board; tiles may be checkpointed.
    Claimed,
    /// Its products are queued.
    Done { tiles: u32, screened: u32, detections: u32 },
    /// Not an image the pipeline can use; kept aside with the reason.
    Quarantined { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameRecord {
    pub id: u64,
    /// The name it had in the spool.
    pub name: String,
    /// Where it is kept on board, relative to the state directory.
    pub file: PathBuf,
    pub sha256: [u8; 32],
    /// Capture time, ms since the Unix epoch.
    pub time_ms: i64,
    pub bytes: u64,
    /// Order of arrival.
    pub sequence: u64,
    pub state: FrameState,
}

/// What one tile gave, checkpointed as soon as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TileResult {
    Screened,
    Detected(Vec<Candidate>),
    /// Clouded over more than the mission allows: not run through the detector.
    Clouded,
}

/// A product in the downlink queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedProduct {
    pub id: u64,
    /// 0 goes first.
    pub priority: u8,
    pub created_ms: i64,
    pub apid: u16,
    pub content_crc: u32,
    pub envelope: Vec<u8>,
    /// Kept in a tree of its own, so that marking a product sent does not rewrite its envelope.
    #[serde(skip)]
    pub sent: Option<Sent>,
    /// [`Self::fingerprint`] when the product was read from the queue, its record's CRC just
    /// checked (not stored: the record's CRC covers the stored copy).
    #[serde(skip)]
    pub read_fingerprint: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub contact: u64,
    pub at_ms: i64,
}

impl QueuedProduct {
    /// CRC-32 of what the radio sends and what its sent mark is kept under: id, APID, envelope.
    pub fn fingerprint(&self) -> u32 {
        let mut digest = CRC32.digest();
        digest.update(&self.id.to_be_bytes());
        digest.update(&self.apid.to_be_bytes());
        digest.update(&self.envelope);
        digest.finalize()
    }

    /// Whether the product is as it was read from the queue: an upset in memory between the read
    /// and the radio fails this (a product never read from the queue fails it too).
    pub fn unchanged_since_read(&self) -> bool {
        self.read_fingerprint == Some(self.fingerprint())
    }

    /// Queue order: priority, then age, then id.
    fn queue_key(&self) -> [u8; 17] {
        let mut key = [0u8; 17];
        key[0] = self.priority;
        key[1..9].copy_from_slice(&((self.created_ms as u64) ^ (1 << 63)).to_be_bytes());
        key[9..].copy_from_slice(&self.id.to_be_bytes());
        key
    }
}

/// Running totals, telemetered in housekeeping and printed in the run summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counters {
    pub frames: u64,
    pub frames_quarantined: u64,
    pub tiles: u64,
    pub tiles_screened: u64,
    /// Tiles that got the screen only because their frame's deadline came first.
    pub tiles_late: u64,
    pub detections: u64,
    pub bytes_captured: u64,
    pub products_made: u64,
    pub products_acknowledged: u64,
    pub products_resent: u64,
    pub cadu_bytes_downlinked: u64,
    pub contacts: u64,
    pub commands_executed: u64,
    pub commands_refused: u64,
    pub uplink_frames_rejected: u64,
    pub faults: u64,
    pub starts: u64,
    pub upload_segments: u64,
    pub upload_segments_refused: u64,
    /// Frames whose image changed in memory between loading and making products.
    pub upsets_detected: u64,
    /// Tiles the cloud screen kept from the detector.
    pub tiles_clouded: u64,
    /// Wall-clock time the detector spent on tiles, microseconds (the payload's energy per tile
    /// is this at its active power).
    pub detector_busy_us: u64,
    /// Frames that arrived with the content of a frame already on board (waiting, processed or
    /// quarantined): dropped, each with an event naming the frame it duplicates.
    pub frames_duplicate: u64,
}

/// Everything besides frames, tiles and the queue that a restart must resume from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlightState {
    /// Number of the last commit; the seal file must never be ahead of it.
    pub commits: u64,
    pub mode: Mode,
    /// Mission time the clock had reached, ms since the Unix epoch.
    pub clock_ms: i64,
    pub encoder: EncoderState,
    /// Anti-replay sequence numbers below this may have been used; reserved in blocks.
    pub arsn_reserved_until: u64,
    pub packet_counts: Vec<(u16, u16)>,
    /// Last uplink ARSN accepted per virtual channel.
    pub uplink_accepted: BTreeMap<u8, u64>,
    pub parameters: BTreeMap<String, f64>,
    /// Commands waiting for their time: (time ms, ground command id, command).
    pub time_tagged: Vec<(i64, u64, Telecommand)>,
    pub next_frame_sequence: u64,
    pub next_record_sequence: u64,
    pub next_housekeeping_ms: i64,
    /// Mission times of recent starts, for the restart limit.
    pub recent_starts: Vec<i64>,
    pub counters: Counters,
    /// The simulated plant's node temperatures (K) and state of charge, to resume the simulation.
    pub plant: Option<(Vec<f64>, f64)>,
    pub peak_temperatures_c: Vec<(String, f64)>,
    pub lowest_soc: f64,
    /// Uploads under way: transfer -> bytes held so far (their segments are in the `uploads` tree).
    pub uploads: BTreeMap<u64, u64>,
    /// The uploaded model that replaced its manifest file, if one did.
    pub installed_model: Option<InstalledModel>,
}

/// A model file installed by telecommand, checked again at every start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstalledModel {
    /// The manifest model whose weights it replaces.
    pub model: String,
    pub transfer: u64,
    /// Relative to the state directory.
    pub file: PathBuf,
    pub sha256: [u8; 32],
    pub signature: Vec<u8>,
}

impl FlightState {
    pub fn new(clock_ms: i64) -> Self {
        Self {
            commits: 0,
            mode: Mode::Nominal,
            clock_ms,
            encoder: EncoderState::default(),
            arsn_reserved_until: 0,
            packet_counts: Vec::new(),
            uplink_accepted: BTreeMap::new(),
            parameters: BTreeMap::new(),
            time_tagged: Vec::new(),
            next_frame_sequence: 0,
            next_record_sequence: 0,
            next_housekeeping_ms: clock_ms,
            recent_starts: Vec::new(),
            counters: Counters::default(),
            plant: None,
            peak_temperatures_c: Vec::new(),
            lowest_soc: 1.0,
            uploads: BTreeMap::new(),
            installed_model: None,
        }
    }
}

/// The changes that make one state transition; applied all together or not at all.
#[derive(Debug, Default)]
pub struct Batch {
    frames: Vec<FrameRecord>,
    frames_removed: Vec<u64>,
    tiles: Vec<(u64, u32, TileResult)>,
    tiles_removed: Vec<u64>,
    products: Vec<QueuedProduct>,
    products_removed: Vec<u64>,
    sent: Vec<(u64, Sent)>,
    segments: Vec<(u64, u64, Vec<u8>)>,
    uploads_removed: Vec<u64>,
}

impl Batch {
    pub fn frame(&mut self, record: FrameRecord) -> &mut Self {
        self.frames.push(record);
        self
    }
    pub fn remove_frame(&mut self, id: u64) -> &mut Self {
        self.frames_removed.push(id);
        self.tiles_removed.push(id);
        self
    }
    pub fn tile(&mut self, frame: u64, index: u32, result: TileResult) -> &mut Self {
        self.tiles.push((frame, index, result));
        self
    }
    /// Drops the frame's tile results (its products are made).
    pub fn clear_tiles(&mut self, frame: u64) -> &mut Self {
        self.tiles_removed.push(frame);
        self
    }
    pub fn product(&mut self, product: QueuedProduct) -> &mut Self {
        self.products.push(product);
        self
    }
    pub fn remove_product(&mut self, id: u64) -> &mut Self {
        self.products_removed.push(id);
        self
    }
    /// Marks a queued product sent (it stays queued until acknowledged).
    pub fn sent(&mut self, id: u64, sent: Sent) -> &mut Self {
        self.sent.push((id, sent));
        self
    }
    pub fn upload_segment(&mut self, transfer: u64, offset: u64, bytes: Vec<u8>) -> &mut Self {
        self.segments.push((transfer, offset, bytes));
        self
    }
    /// Drops every segment of an upload (installed, or refused).
    pub fn remove_upload(&mut self, transfer: u64) -> &mut Self {
        self.uploads_removed.push(transfer);
        self
    }
}

/// Whether commits survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The sled file in the state directory, flushed and sealed (flight).
    Durable,
    /// A temporary sled database that is never flushed and is gone at exit: the same pipeline
    /// without crash safety, for the checkpoint-overhead benchmark only.
    Volatile,
}

pub struct Checkpoint {
    durability: Durability,
    /// Time spent committing and flushing.
    busy: Duration,
    path: PathBuf,
    seal: PathBuf,
    db: sled::Db,
    frames: sled::Tree,
    tiles: sled::Tree,
    queue: sled::Tree,
    index: sled::Tree,
    meta: sled::Tree,
    sent: sled::Tree,
    uploads: sled::Tree,
    state: FlightState,
    /// CRC-32 of `state` as last committed or remembered: an upset in it between commits is
    /// caught before it can be committed.
    state_crc: u32,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint").field("path", &self.path).field("commits", &self.state.commits).finish()
    }
}

fn seal(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.extend_from_slice(&CRC32.checksum(bytes).to_be_bytes());
    out
}

/// CRC-32 of a value's encoding: what the in-memory flight state (and a frame's detections while
/// its products are made) is checked against.
pub(crate) fn crc_of<T: Serialize>(value: &T) -> u32 {
    CRC32.checksum(&postcard::to_stdvec(value).unwrap_or_default())
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // every checkpoint type serializes (no maps with non-string keys postcard refuses)
    seal(&postcard::to_stdvec(value).unwrap_or_default())
}

/// The value of a record, or why it cannot be trusted.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let Some(split) = bytes.len().checked_sub(4) else {
        return Err(format!("record of {} bytes is shorter than its CRC", bytes.len()));
    };
    let (body, crc) = bytes.split_at(split);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = CRC32.checksum(body);
    if stored != computed {
        return Err(format!("CRC-32 is {computed:#010x}, the record says {stored:#010x}"));
    }
    postcard::from_bytes(body).map_err(|e| format!("does not decode: {e}"))
}

/// How long opening waits for another holder of the database's lock to let go of it (a process
/// still exiting, or the threads of a database dropped a moment ago) before it gives up.
const LOCK_WAIT: Duration = Duration::from_secs(5);

impl Checkpoint {
    /// Opens (or creates) the checkpoint in `state_dir`, checking every record and the seal.
    /// A new checkpoint starts from `fresh`.
    pub fn open(state_dir: &Path, fresh: FlightState, durability: Durability) -> Result<Self, CheckpointError> {
        let path = state_dir.join("checkpoint");
        let seal = state_dir.join("checkpoint.seal");
        let storage = |message: String| CheckpointError::Storage { path: path.clone(), message };
        let corrupt = |detail: String| CheckpointError::Corrupt { path: path.clone(), detail };
        std::fs::create_dir_all(state_dir).map_err(|e| storage(e.to_string()))?;
        let sealed = match durability {
            Durability::Durable => read_beside::<u64>(&seal)?,
            Durability::Volatile => None,
        };
        // sled may panic on some damaged files instead of returning an error
        let open = || {
            std::panic::catch_unwind(|| match durability {
                Durability::Durable => sled::Config::new().path(&path).open(),
                Durability::Volatile => sled::Config::new().temporary(true).flush_every_ms(None).open(),
            })
        };
        // a database locked by another holder is in use, not damaged: never set aside for that
        let deadline = Instant::now() + LOCK_WAIT;
        let opened = loop {
            match open() {
                // sled 0.34 says so only in the error's text (an `Other` I/O error)
                Ok(Err(sled::Error::Io(e))) if e.to_string().contains("could not acquire lock") => {
                    if Instant::now() > deadline {
                        return Err(storage(format!("another process holds its lock: {e}")));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => break other,
            }
        };
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(e)) => return Err(corrupt(format!("sled cannot open it: {e}"))),
            Err(_) => return Err(corrupt("sled failed opening it".into())),
        };
        let tree = |name: &str| db.open_tree(name).map_err(|e| corrupt(format!("tree `{name}`: {e}")));
        let (frames, tiles, queue, index, meta) =
            (tree("frames")?, tree("tiles")?, tree("queue")?, tree("index")?, tree("meta")?);
        let (sent, uploads) = (tree("sent")?, tree("uploads")?);
        // before any record is decoded: one of another layout may decode to something else
        let layout = match meta.get(LAYOUT_KEY).map_err(|e| corrupt(e.to_string()))? {
            Some(bytes) => Some(decode::<u32>(&bytes).map_err(|e| corrupt(format!("record layout: {e}")))?),
            None => None,
        };
        let written = meta.get(STATE_KEY).map_err(|e| corrupt(e.to_string()))?.is_some();
        match layout {
            Some(LAYOUT) => {}
            None if !written => {
                meta.insert(LAYOUT_KEY, encode(&LAYOUT)).map_err(|e| storage(e.to_string()))?;
            }
            found => return Err(CheckpointError::Layout { path: path.clone(), found }),
        }
        let trees = [
            ("frames", &frames),
            ("tiles", &tiles),
            ("queue", &queue),
            ("index", &index),
            ("sent", &sent),
            ("uploads", &uploads),
        ];
        for (name, t) in trees {
            for item in t.iter() {
                let (key, value) = item.map_err(|e| corrupt(format!("tree `{name}`: {e}")))?;
                let checked = match name {
                    "frames" => decode::<FrameRecord>(&value).map(drop),
                    "tiles" => decode::<TileResult>(&value).map(drop),
                    "queue" => decode::<QueuedProduct>(&value).map(drop),
                    "sent" => decode::<Sent>(&value).map(drop),
                    "uploads" => decode::<Vec<u8>>(&value).map(drop),
                    _ => decode::<[u8; 17]>(&value).map(drop),
                };
                checked.map_err(|e| corrupt(format!("tree `{name}`, key {}: {e}", kestrel_link::hex::encode(&key))))?;
            }
        }
        let state = match meta.get(STATE_KEY).map_err(|e| corrupt(e.to_string()))? {
            Some(bytes) => decode::<FlightState>(&bytes).map_err(|e| corrupt(format!("flight state: {e}")))?,
            None => fresh,
        };
        if let Some(sealed) = sealed
            && state.commits < sealed
        {
            return Err(corrupt(format!(
                "it holds commit {} but commit {sealed} was made durable: it lost its tail",
                state.commits
            )));
        }
        Ok(Self {
            durability,
            busy: Duration::ZERO,
            path,
            seal,
            db,
            frames,
            tiles,
            queue,
            index,
            meta,
            sent,
            uploads,
            state_crc: crc_of(&state),
            state,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn state(&self) -> &FlightState {
        &self.state
    }

    /// Applies `batch` and `state` (the new flight state) as one transaction.
    pub fn commit(&mut self, batch: &Batch, state: FlightState) -> Result<(), CheckpointError> {
        let started = Instant::now();
        let result = self.apply(batch, state);
        self.busy += started.elapsed();
        result
    }

    fn apply(&mut self, batch: &Batch, mut state: FlightState) -> Result<(), CheckpointError> {
        self.check_state()?;
        state.commits = self.state.commits + 1;
        let state_bytes = encode(&state);
        let trees = (&self.frames, &self.tiles, &self.queue, &self.index, &self.meta, &self.sent, &self.uploads);
        let result = trees.transaction(|(frames, tiles, queue, index, meta, sent, uploads)| {
            for id in &batch.frames_removed {
                frames.remove(&id.to_be_bytes())?;
            }
            for record in &batch.frames {
                frames.insert(&record.id.to_be_bytes(), encode(record))?;
            }
            for (frame, tile, result) in &batch.tiles {
                tiles.insert(&tile_key(*frame, *tile)[..], encode(result))?;
            }
            for id in &batch.products_removed {
                sent.remove(&id.to_be_bytes())?;
                if let Some(key) = index.remove(&id.to_be_bytes())?
                    && let Ok(key) = decode::<[u8; 17]>(&key)
                {
                    queue.remove(&key[..])?;
                }
            }
            for product in &batch.products {
                let key = product.queue_key();
                if let Some(old) = index.insert(&product.id.to_be_bytes(), encode(&key))?
                    && let Ok(old) = decode::<[u8; 17]>(&old)
                    && old != key
                {
                    queue.remove(&old[..])?;
                }
                queue.insert(&key[..], encode(product))?;
                match &product.sent {
                    Some(mark) => sent.insert(&product.id.to_be_bytes(), encode(mark))?,
                    None => sent.remove(&product.id.to_be_bytes())?,
                };
            }
            for (id, mark) in &batch.sent {
                sent.insert(&id.to_be_bytes(), encode(mark))?;
            }
            for (transfer, offset, bytes) in &batch.segments {
                uploads.insert(&pair_key(*transfer, *offset)[..], encode(bytes))?;
            }
            meta.insert(STATE_KEY, state_bytes.clone())?;
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        result.map_err(|e: TransactionError<()>| self.storage(format!("{e:?}")))?;
        // tile results go with their frame; not inside the transaction (a range scan), but harmless
        // if a crash leaves them: they are dropped again at the frame's next commit
        let removed = batch.tiles_removed.iter().map(|f| (&self.tiles, f));
        for (tree, prefix) in removed.chain(batch.uploads_removed.iter().map(|t| (&self.uploads, t))) {
            for key in tree.scan_prefix(prefix.to_be_bytes()).keys() {
                let key = key.map_err(|e| self.storage(e.to_string()))?;
                tree.remove(key).map_err(|e| self.storage(e.to_string()))?;
            }
        }
        // the sealed encoding ends with the state's CRC-32
        self.state_crc = state_bytes.len().checked_sub(4).map_or(0, |at| {
            u32::from_be_bytes([state_bytes[at], state_bytes[at + 1], state_bytes[at + 2], state_bytes[at + 3]])
        });
        self.state = state;
        Ok(())
    }

    /// Whether the in-memory flight state is still what was last committed or remembered. A
    /// change in between is an upset (every legitimate change goes through `commit` or
    /// `remember`); the state the next commit was built from cannot be trusted, so nothing is
    /// committed and the caller restarts from the checkpoint on disk.
    pub fn check_state(&self) -> Result<(), CheckpointError> {
        let found = crc_of(&self.state);
        if found == self.state_crc {
            return Ok(());
        }
        Err(self.corrupt(format!(
            "the flight state in memory changed since it was committed (CRC-32 {found:#010x}, expected {:#010x}): an upset",
            self.state_crc
        )))
    }

    /// Where the in-memory flight state is, and how long (the fault injector aims at it).
    pub fn state_region(&self) -> (usize, usize) {
        (std::ptr::from_ref(&self.state) as usize, size_of::<FlightState>())
    }

    /// Replaces the in-memory flight state with one that only differs in what may be lost in a
    /// crash (model samples, peaks): it is written with the next commit.
    pub fn remember(&mut self, state: FlightState) -> Result<(), CheckpointError> {
        self.check_state()?;
        self.state = FlightState { commits: self.state.commits, ..state };
        self.state_crc = crc_of(&self.state);
        Ok(())
    }

    /// Makes everything committed durable, then seals it.
    pub fn flush(&mut self) -> Result<(), CheckpointError> {
        if self.durability == Durability::Volatile {
            return Ok(());
        }
        let started = Instant::now();
        let result = self.flush_and_seal();
        self.busy += started.elapsed();
        result
    }

    /// Time spent in commits and flushes since opening.
    pub fn busy(&self) -> Duration {
        self.busy
    }

    fn flush_and_seal(&mut self) -> Result<(), CheckpointError> {
        self.db.flush().map_err(|e| self.storage(e.to_string()))?;
        write_beside(&self.seal, &self.state.commits)
    }

    fn storage(&self, message: String) -> CheckpointError {
        CheckpointError::Storage { path: self.path.clone(), message }
    }

    fn corrupt(&self, detail: String) -> CheckpointError {
        CheckpointError::Corrupt { path: self.path.clone(), detail }
    }

    pub fn frame(&self, id: u64) -> Result<Option<FrameRecord>, CheckpointError> {
        self.frames
            .get(id.to_be_bytes())
            .map_err(|e| self.storage(e.to_string()))?
            .map(|v| decode(&v).map_err(|e| self.corrupt(format!("frame {id}: {e}"))))
            .transpose()
    }

    /// Every frame record, in no particular order.
    pub fn frames(&self) -> Result<Vec<FrameRecord>, CheckpointError> {
        self.frames
            .iter()
            .values()
            .map(|v| {
                let v = v.map_err(|e| self.storage(e.to_string()))?;
                decode(&v).map_err(|e| self.corrupt(format!("frame record: {e}")))
            })
            .collect()
    }

    /// The tile results of a frame checkpointed so far, by tile index.
    pub fn tiles(&self, frame: u64) -> Result<BTreeMap<u32, TileResult>, CheckpointError> {
        self.tiles
            .scan_prefix(frame.to_be_bytes())
            .map(|item| {
                let (key, value) = item.map_err(|e| self.storage(e.to_string()))?;
                let index = u32::from_be_bytes([key[8], key[9], key[10], key[11]]);
                let result = decode(&value).map_err(|e| self.corrupt(format!("tile {index} of {frame}: {e}")))?;
                Ok((index, result))
            })
            .collect()
    }

    pub fn product(&self, id: u64) -> Result<Option<QueuedProduct>, CheckpointError> {
        let Some(key) = self.index.get(id.to_be_bytes()).map_err(|e| self.storage(e.to_string()))? else {
            return Ok(None);
        };
        let key: [u8; 17] = decode(&key).map_err(|e| self.corrupt(format!("index of {id}: {e}")))?;
        let Some(value) = self.queue.get(key).map_err(|e| self.storage(e.to_string()))? else { return Ok(None) };
        let product = decode(&value).map_err(|e| self.corrupt(format!("product {id}: {e}")))?;
        Ok(Some(self.with_sent_mark(product)?))
    }

    /// Queued products in queue order (priority, then age) whose sent mark is `eligible`,
    /// stopping after `limit`. A product is read and decoded only once its mark is: during a
    /// contact most of the queue is sent and waiting for its acknowledgement, and the send loop
    /// asks every turn.
    pub fn queued(
        &self,
        limit: usize,
        mut eligible: impl FnMut(Option<&Sent>) -> bool,
    ) -> Result<Vec<QueuedProduct>, CheckpointError> {
        let mut out = Vec::new();
        for item in self.queue.iter() {
            let (key, value) = item.map_err(|e| self.storage(e.to_string()))?;
            let id = key.get(9..17).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_be_bytes);
            let id = id.ok_or_else(|| self.corrupt(format!("a queue key of {} bytes", key.len())))?;
            let sent = self.sent_mark(id)?;
            if !eligible(sent.as_ref()) {
                continue;
            }
            let mut product: QueuedProduct =
                decode(&value).map_err(|e| self.corrupt(format!("queued product {id}: {e}")))?;
            product.sent = sent;
            product.read_fingerprint = Some(product.fingerprint());
            out.push(product);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The segments of an upload held so far: (offset, bytes), by offset.
    pub fn upload(&self, transfer: u64) -> Result<Vec<(u64, Vec<u8>)>, CheckpointError> {
        self.uploads
            .scan_prefix(transfer.to_be_bytes())
            .map(|item| {
                let (key, value) = item.map_err(|e| self.storage(e.to_string()))?;
                let offset = u64::from_be_bytes(key[8..16].try_into().unwrap_or_default());
                let bytes = decode(&value).map_err(|e| self.corrupt(format!("upload {transfer} at {offset}: {e}")))?;
                Ok((offset, bytes))
            })
            .collect()
    }

    fn with_sent_mark(&self, mut product: QueuedProduct) -> Result<QueuedProduct, CheckpointError> {
        product.sent = self.sent_mark(product.id)?;
        Ok(product)
    }

    fn sent_mark(&self, id: u64) -> Result<Option<Sent>, CheckpointError> {
        let mark = self.sent.get(id.to_be_bytes()).map_err(|e| self.storage(e.to_string()))?;
        mark.map(|v| decode(&v).map_err(|e| self.corrupt(format!("sent mark of {id}: {e}")))).transpose()
    }

    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }
}

/// Writes a small record, CRC-sealed, to a file of its own beside the database (replacing it
/// atomically and durably): for what must outlive the database, like its seal.
pub fn write_beside<T: Serialize>(path: &Path, value: &T) -> Result<(), CheckpointError> {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, encode(value))
        .and_then(|()| std::fs::File::open(&temporary)?.sync_all())
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| CheckpointError::Storage { path: path.to_path_buf(), message: e.to_string() })
}

/// A record `write_beside` wrote; `None` if there is none; an error if it does not verify.
pub fn read_beside<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, CheckpointError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            decode(&bytes).map(Some).map_err(|detail| CheckpointError::Corrupt { path: path.to_path_buf(), detail })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CheckpointError::Storage { path: path.to_path_buf(), message: e.to_string() }),
    }
}

fn tile_key(frame: u64, tile: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&frame.to_be_bytes());
    key[8..].copy_from_slice(&tile.to_be_bytes());
    key
}

fn pair_key(first: u64, second: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&first.to_be_bytes());
    key[8..].copy_from_slice(&second.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: u64, priority: u8, created_ms: i64) -> QueuedProduct {
        QueuedProduct {
            id,
            priority,
            created_ms,
            apid: 0x20,
            content_crc: 1,
            envelope: vec![id as u8; 10],
            sent: None,
            read_fingerprint: None,
        }
    }

    #[test]
    fn a_product_read_from_the_queue_is_unchanged_until_a_bit_of_what_the_radio_sends_flips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut checkpoint = Checkpoint::open(dir.path(), FlightState::new(0), Durability::Durable).expect("open");
        let made = product(5, 1, 10);
        assert!(!made.unchanged_since_read(), "a product never read from the queue has nothing to hold to");
        checkpoint.commit(Batch::default().product(made), checkpoint.state().clone()).expect("commit");
        let read = checkpoint.queued(1, |_| true).expect("queue").remove(0);
        assert!(read.unchanged_since_read());
        for bit in 0..read.envelope.len() * 8 {
            let mut upset = read.clone();
            upset.envelope[bit / 8] ^= 1 << (bit % 8);
            assert!(!upset.unchanged_since_read(), "envelope bit {bit}");
        }
        for bit in 0..64 {
            assert!(!QueuedProduct { id: read.id ^ (1 << bit), ..read.clone() }.unchanged_since_read(), "id bit {bit}");
        }
        for bit in 0..16 {
            assert!(
                !QueuedProduct { apid: read.apid ^ (1 << bit), ..read.clone() }.unchanged_since_read(),
                "apid bit {bit}"
            );
        }
    }

    #[test]
    fn queue_orders_by_priority_then_age_and_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut checkpoint = Checkpoint::open(dir.path(), FlightState::new(0), Durability::Durable).expect("open");
        let mut batch = Batch::default();
        batch.product(product(1, 2, 500)).product(product(2, 0, 900)).product(product(3, 2, -100));
        let mut state = checkpoint.state().clone();
        state.counters.products_made = 3;
        checkpoint.commit(&batch, state).expect("commit");
        let order: Vec<u64> = checkpoint.queued(10, |_| true).expect("queue").iter().map(|p| p.id).collect();
        assert_eq!(order, [2, 3, 1]);
        // a product queued again (sent) keeps one entry
        let mut sent = product(1, 2, 500);
        sent.sent = Some(Sent { contact: 1, at_ms: 7 });
        let mut batch = Batch::default();
        batch.product(sent.clone()).remove_product(2);
        checkpoint.commit(&batch, checkpoint.state().clone()).expect("commit");
        checkpoint.flush().expect("flush");
        drop(checkpoint);
        let checkpoint = Checkpoint::open(dir.path(), FlightState::new(0), Durability::Durable).expect("reopen");
        assert_eq!(checkpoint.queue_len(), 2);
        assert_eq!(checkpoint.product(1).expect("read"), Some(sent));
        assert_eq!(checkpoint.product(2).expect("read"), None);
        assert_eq!(checkpoint.state().commits, 2);
        assert_eq!(checkpoint.state().counters.products_made, 3);

        // a sent mark alone leaves the product's record as it was, and goes with the product
        let mut checkpoint = checkpoint;
        let mark = Sent { contact: 2, at_ms: 9 };
        checkpoint.commit(Batch::default().sent(3, mark), checkpoint.state().clone()).expect("commit");
        assert_eq!(
            checkpoint.product(3).expect("read"),
            Some(QueuedProduct { sent: Some(mark), ..product(3, 2, -100) })
        );
        checkpoint.commit(Batch::default().remove_product(3), checkpoint.state().clone()).expect("commit");
        assert_eq!(checkpoint.product(3).expect("read"), None);
        let mark_left = checkpoint.sent.contains_key(3u64.to_be_bytes()).expect("read");
        assert!(!mark_left, "the sent mark went with the product");
    }

    #[test]
    fn a_checkpoint_another_holder_has_open_is_in_use_not_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _held = Checkpoint::open(dir.path(), FlightState::new(0), Durability::Durable).expect("open");
        let refused = Checkpoint::open(dir.path(), FlightState::new(0), Durability::Durable).expect_err("in use");
        assert!(matches!(refused, CheckpointError::Storage { .. }), "never taken for damage: {refused}");
        let aside = std::fs::read_dir(dir.path()).expect("dir").filter_map(Result::ok);
        assert!(!aside.into_iter().any(|e| e.file_name().to_string_lossy().contains("corrupt")), "nothing set aside");
    }

    #[test]
    fn a_record_with_a_flipped_bit_is_refused_by_its_crc() {
        let good = encode(&product(9, 1, 2));
        assert!(decode::<QueuedProduct>(&good).is_ok());
        for bit in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode::<QueuedProduct>(&bad).is_err(), "bit {bit} flipped went unnoticed");
        }
        assert!(decode::<QueuedProduct>(&good[..3]).is_err());
    }

    #[test]
    fn a_checkpoint_of_another_record_layout_is_refused_before_its_records_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut checkpoint = Checkpoint::open(dir.path(), FlightState::new(0), Durability::Durable).expect("open");
        checkpoint.commit(&Batch::default(), checkpoint.state().clone()).expect("commit");
        checkpoint.flush().expect("flush");
        drop(checkpoint);
        assert!(Checkpoint::open(dir.path(), FlightState::new(0), Durability::Durable).is_ok(), "its own layout");
        let edit_meta = |edit: &dyn Fn(&sled::Tree)| {
            let db = sled::open(dir.path().join("checkpoint")).expect("sled");
            let meta = db.open_tree("meta").expect("meta");
            edit(&meta);
            meta.flush().expect("flush");
        };

        edit_meta(&|meta| drop(meta.insert(LAYOUT_KEY, encode(&(LAYOUT + 1))).expect("insert")));
        let error = Checkpoint::open(dir.path(), FlightState::new(0), Durability::Durable).expect_err("a newer layout");
        assert!(matches!(error, CheckpointError::Layout { found: Some(found), .. } if found == LAYOUT + 1), "{error}");
        assert!(error.to_string().contains(&format!("this build reads layout {LAYOUT}")), "{error}");

        // written before layouts were recorded: a flight state and no layout
        edit_meta(&|meta| drop(meta.remove(LAYOUT_KEY).expect("remove")));
        let error = Checkpoint::open(dir.path(), FlightState::new(0), Durability::Durable).expect_err("no layout");
        assert!(error.to_string().contains("written before layouts were recorded"), "{error}");
    }

    #[test]
    fn an_upset_in_the_state_in_memory_is_never_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut checkpoint = Checkpoint::open(dir.path(), FlightState::new(0), Durability::Durable).expect("open");
        let mut state = checkpoint.state().clone();
        state.counters.frames = 3;
        checkpoint.commit(&Batch::default(), state).expect("commit");
        checkpoint.check_state().expect("intact");
        // a bit flipped in memory, as an SEU would
        checkpoint.state.counters.frames ^= 1 << 40;
        let next = checkpoint.state().clone();
        let error = checkpoint.commit(&Batch::default(), next.clone()).expect_err("an upset");
        assert!(error.to_string().contains("changed since it was committed"), "{error}");
        assert!(checkpoint.remember(next).is_err(), "nor remembered");
        drop(checkpoint);
        let reopened = Checkpoint::open(dir.path(), FlightState::new(0), Durability::Durable).expect("reopen");
        assert_eq!(reopened.state().counters.frames, 3, "what is on disk is what was committed");
    }

    #[test]
    fn a_checkpoint_behind_its_seal_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut checkpoint = Checkpoint::open(dir.path(), FlightState::new(0), Durability::Durable).expect("open");
        checkpoint.commit(&Batch::default(), checkpoint.state().clone()).expect("commit");
        checkpoint.flush().expect("flush");
        drop(checkpoint);
        // the seal of a later commit than the database holds: the database lost its tail
        std::fs::write(dir.path().join("checkpoint.seal"), encode(&5u64)).expect("seal");
        let error = Checkpoint::open(dir.path(), FlightState::new(0), Durability::Durable).expect_err("refused");
        assert!(error.to_string().contains("holds commit 1 but commit 5"), "{error}");
    }
}
