//! One station's stream: CADUs in (any chunking), verified products into the archive, and the
//! ids to acknowledge out. Verification is layered: Reed-Solomon, frame CRC, authentication and
//! anti-replay in the link decoder; then segment reassembly; then the product's envelope, schema
//! version and content CRC. A product that fails any of them is counted and never stored.
//! Decoding runs on the caller's thread, verifying and storing on one of the station's own, so
//! the two overlap.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use kestrel_link::decoder::{CaduDecoder, DecodeStats};
use kestrel_link::packet::{Apid, SegmentReassembler};
use kestrel_link::product::Product;
use kestrel_link::profile::LinkProfile;
use kestrel_link::security::{ReplayGuard, SecurityAssociation};
use serde::Serialize;

use crate::archive::{Archive, ArchiveError, Stored};

/// Product APIDs: anything else on the downlink is not ours to archive.
const PRODUCT_APIDS: [Apid; 6] =
    [Apid::Housekeeping, Apid::Event, Apid::CommandReport, Apid::Detections, Apid::Chip, Apid::Thumbnail];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestStats {
    pub products_stored: u64,
    pub duplicates: u64,
    /// Same id, other content: kept as first stored and reported.
    pub conflicts: u64,
    /// Products that failed their envelope, schema or content CRC check.
    pub products_rejected: u64,
    /// Packets on APIDs that carry no products.
    pub foreign_packets: u64,
    pub incomplete_products_dropped: u64,
}

/// Verified products, with their envelopes as received, on their way to the storing thread.
type Verified = Vec<(Product, Vec<u8>)>;

/// A batch for the storing thread: its products, when they arrived, and the decoder's anti-replay
/// marks once it had decoded them (raised in the archive once they are stored).
struct Batch {
    verified: Verified,
    now_unix_ms: i64,
    replay_marks: Vec<(u8, u64)>,
}

/// What the storing thread did with one batch.
#[derive(Debug, Default)]
struct BatchOutcome {
    /// Ids now safe in the archive (stored now or before): to acknowledge.
    safe: Vec<u64>,
    stats: IngestStats,
}

/// Batches handed to the storing thread and not yet taken: while it stores, the station's thread
/// decodes and verifies the next (two stages, two cores); bounded, so a slow archive slows the
/// reading of the socket rather than filling memory (32 reads of 256 KiB at most per station).
/// Deep enough that a slow store is followed by a large group commit (PostgreSQL gained 10 %
/// over 8).
const BATCHES_QUEUED: usize = 32;

/// A station's decoder and reassembler, and the thread that verifies and stores what they give
/// into the shared archive.
#[derive(Debug)]
pub struct StationIngest {
    pub station: String,
    decoder: CaduDecoder,
    reassembler: SegmentReassembler,
    stats: IngestStats,
    /// Products the packets so far completed: (APID, payload).
    completed: Vec<(u16, Vec<u8>)>,
    to_store: Option<SyncSender<Batch>>,
    /// Per store: how many batches it took, and what came of them.
    outcomes: Receiver<(usize, Result<BatchOutcome, ArchiveError>)>,
    storer: Option<JoinHandle<()>>,
    in_flight: usize,
    archive: Arc<dyn Archive>,
    /// The security association whose anti-replay marks this stream resumes and raises, and the
    /// marks it resumed from.
    spi: Option<u16>,
    resumed_marks: Vec<(u8, u64)>,
}

impl StationIngest {
    /// A station's stream, refusing every frame at or below the archive's anti-replay marks.
    pub fn new(
        station: impl Into<String>,
        profile: LinkProfile,
        archive: Arc<dyn Archive>,
    ) -> Result<Self, ArchiveError> {
        let station = station.into();
        let spi = profile.security.as_ref().map(SecurityAssociation::spi);
        let marks = spi.map(|spi| archive.downlink_replay_marks(spi)).transpose()?.unwrap_or_default();
        let (to_store, batches) = sync_channel::<Batch>(BATCHES_QUEUED);
        let (done, outcomes) = channel();
        let (name, storing) = (station.clone(), archive.clone());
        let storer = std::thread::Builder::new()
            .name("ingest-store".into())
            .spawn(move || {
                while let Ok(mut batch) = batches.recv() {
                    // group commit: what queued while the last store ran goes in one transaction
                    let mut merged = 1;
                    while let Ok(more) = batches.try_recv() {
                        batch.verified.extend(more.verified);
                        batch.now_unix_ms = more.now_unix_ms;
                        batch.replay_marks = more.replay_marks;
                        merged += 1;
                    }
                    let outcome = store(&name, storing.as_ref(), batch.verified, batch.now_unix_ms).and_then(|o| {
                        spi.map(|spi| storing.raise_downlink_replay_marks(spi, &batch.replay_marks))
                            .transpose()
                            .map(|_| o)
                    });
                    if done.send((merged, outcome)).is_err() {
                        break;
                    }
                }
            })
            .ok();
        Ok(Self {
            station,
            decoder: CaduDecoder::resuming(profile, ReplayGuard::resume(marks.iter().copied())),
            reassembler: SegmentReassembler::default(),
            stats: IngestStats::default(),
            completed: Vec::new(),
            to_store: storer.is_some().then_some(to_store),
            outcomes,
            storer,
            in_flight: 0,
            archive,
            spi,
            resumed_marks: marks,
        })
    }

    pub fn stats(&self) -> IngestStats {
        IngestStats { incomplete_products_dropped: self.reassembler.stats().incomplete_dropped, ..self.stats.clone() }
    }

    pub fn link_stats(&self) -> DecodeStats {
        self.decoder.stats()
    }

    /// Batches with the storing thread.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Takes the next bytes from the station and hands what they complete to the storing
    /// thread; returns the ids of products that became safe in the archive since the last call
    /// (stored now or before), which the spacecraft may prune once acknowledged.
    pub fn push(&mut self, bytes: &[u8], now_unix_ms: i64) -> Result<Vec<u64>, ArchiveError> {
        let Self { decoder, reassembler, completed, .. } = self;
        decoder.push(bytes, &mut |d| completed.extend(reassembler.push(d.packet)));
        self.hand_over(now_unix_ms)?;
        self.collect(false)
    }

    /// What became safe since the last call, without waiting.
    pub fn poll(&mut self) -> Result<Vec<u64>, ArchiveError> {
        self.collect(false)
    }

    /// The stream ended: decodes what is left and waits until all of it is stored.
    pub fn finish(&mut self, now_unix_ms: i64) -> Result<Vec<u64>, ArchiveError> {
        let Self { decoder, reassembler, completed, .. } = self;
        decoder.finish(&mut |d| completed.extend(reassembler.push(d.packet)));
        self.hand_over(now_unix_ms)?;
        let safe = self.collect(true);
        self.to_store = None;
        if let Some(storer) = self.storer.take() {
            let _ = storer.join();
        }
        // frames that completed no product still raise the marks
        let marks = self.decoder.replay_marks();
        if let Some(spi) = self.spi.filter(|_| marks != self.resumed_marks) {
            self.archive.raise_downlink_replay_marks(spi, &marks)?;
        }
        safe
    }

    /// Verifies the products the packets so far completed (envelope, schema, content CRC, APID)
    /// and hands what passes to the storing thread.
    fn hand_over(&mut self, now_unix_ms: i64) -> Result<(), ArchiveError> {
        let mut verified = Vec::new();
        for (apid, payload) in self.completed.drain(..) {
            if !PRODUCT_APIDS.iter().any(|a| a.value() == apid) {
                self.stats.foreign_packets += 1;
                continue;
            }
            match Product::decode(&payload) {
                Ok(product) if product.body.kind().apid().value() == apid => verified.push((product, payload)),
                Ok(product) => {
                    self.stats.products_rejected += 1;
                    tracing::warn!(station = %self.station, id = product.id, apid, "product on the wrong APID; not stored");
                }
                Err(e) => {
                    self.stats.products_rejected += 1;
                    tracing::warn!(station = %self.station, error = %e, "product refused; not stored");
                }
            }
        }
        if verified.is_empty() {
            return Ok(());
        }
        let to_store = self.to_store.as_ref().ok_or_else(storer_gone)?;
        let batch = Batch { verified, now_unix_ms, replay_marks: self.decoder.replay_marks() };
        to_store.send(batch).map_err(|_| storer_gone())?;
        self.in_flight += 1;
        Ok(())
    }

    /// Outcomes of the storing thread: all of them (`wait`), or those ready now.
    fn collect(&mut self, wait: bool) -> Result<Vec<u64>, ArchiveError> {
        let mut safe = Vec::new();
        while self.in_flight > 0 {
            let outcome = if wait {
                self.outcomes.recv().map_err(|_| storer_gone())?
            } else {
                match self.outcomes.try_recv() {
                    Ok(outcome) => outcome,
                    Err(_) => break,
                }
            };
            let (batches, outcome) = outcome;
            self.in_flight -= batches;
            let outcome = outcome?;
            safe.extend(outcome.safe);
            let (s, o) = (&mut self.stats, outcome.stats);
            s.products_stored += o.products_stored;
            s.duplicates += o.duplicates;
            s.conflicts += o.conflicts;
        }
        Ok(safe)
    }
}

fn storer_gone() -> ArchiveError {
    ArchiveError::Storage("the storing thread has stopped".into())
}

/// Stores a batch of verified products.
fn store(
    station: &str,
    archive: &dyn Archive,
    verified: Verified,
    now_unix_ms: i64,
) -> Result<BatchOutcome, ArchiveError> {
    let mut outcome = BatchOutcome::default();
    let arrivals: Vec<(&Product, &[u8])> = verified.iter().map(|(p, b)| (p, b.as_slice())).collect();
    let stored = archive.store_all(&arrivals, station, now_unix_ms)?;
    for ((product, _), stored) in verified.iter().zip(stored) {
        match stored {
            Stored::Inserted => outcome.stats.products_stored += 1,
            Stored::Duplicate => outcome.stats.duplicates += 1,
            Stored::Conflict => {
                // acknowledged all the same: flight would send it again for ever, and the
                // link budget with it; the newcomer is kept aside for the operator
                outcome.stats.conflicts += 1;
                tracing::error!(
                    station,
                    id = product.id,
                    "a different product arrived under a stored id; the stored one is kept, the newcomer set aside among the conflicts"
                );
            }
        }
        outcome.safe.push(product.id);
    }
    Ok(outcome)
}
