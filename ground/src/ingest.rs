//! One station's stream: CADUs in (any chunking), verified products into the archive, and the
//! ids to acknowledge out. Verification is layered: Reed-Solomon, frame CRC, authentication and
//! anti-replay in the link decoder; then segment reassembly; then the product's envelope, schema
//! version and content CRC. A product that fails any of them is counted and never stored.

use std::sync::Arc;

use kestrel_link::decoder::{CaduDecoder, DecodeStats};
use kestrel_link::packet::{Apid, SegmentReassembler};
use kestrel_link::product::Product;
use kestrel_link::profile::LinkProfile;
use serde::Serialize;

use crate::archive::{Archive, ArchiveError, Stored};

/// Product APIDs: anything else on the downlink is not ours to archive.
const PRODUCT_APIDS: [Apid; 5] = [Apid::Housekeeping, Apid::Event, Apid::Detections, Apid::Chip, Apid::Thumbnail];

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

/// A station's decoder and reassembler, writing into the shared archive.
#[derive(Debug)]
pub struct StationIngest {
    pub station: String,
    decoder: CaduDecoder,
    reassembler: SegmentReassembler,
    archive: Arc<dyn Archive>,
    stats: IngestStats,
    packets: Vec<Vec<u8>>,
}

impl StationIngest {
    pub fn new(station: impl Into<String>, profile: LinkProfile, archive: Arc<dyn Archive>) -> Self {
        Self {
            station: station.into(),
            decoder: CaduDecoder::new(profile),
            reassembler: SegmentReassembler::default(),
            archive,
            stats: IngestStats::default(),
            packets: Vec::new(),
        }
    }

    pub fn stats(&self) -> IngestStats {
        IngestStats { incomplete_products_dropped: self.reassembler.stats().incomplete_dropped, ..self.stats.clone() }
    }

    pub fn link_stats(&self) -> DecodeStats {
        self.decoder.stats()
    }

    /// Takes the next bytes from the station; returns the ids of products now safe in the
    /// archive (stored now or before), which the spacecraft may prune once acknowledged.
    pub fn push(&mut self, bytes: &[u8], now_unix_ms: i64) -> Result<Vec<u64>, ArchiveError> {
        let packets = &mut self.packets;
        self.decoder.push(bytes, &mut |d| packets.push(d.packet.to_vec()));
        self.archive_packets(now_unix_ms)
    }

    /// The stream ended: decodes what is left.
    pub fn finish(&mut self, now_unix_ms: i64) -> Result<Vec<u64>, ArchiveError> {
        let packets = &mut self.packets;
        self.decoder.finish(&mut |d| packets.push(d.packet.to_vec()));
        self.archive_packets(now_unix_ms)
    }

    fn archive_packets(&mut self, now_unix_ms: i64) -> Result<Vec<u64>, ArchiveError> {
        let mut verified: Vec<(Product, Vec<u8>)> = Vec::new();
        for packet in std::mem::take(&mut self.packets) {
            let Some((apid, payload)) = self.reassembler.push(&packet) else { continue };
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
            return Ok(Vec::new());
        }
        let arrivals: Vec<(&Product, &[u8])> = verified.iter().map(|(p, b)| (p, b.as_slice())).collect();
        let outcomes = self.archive.store_all(&arrivals, &self.station, now_unix_ms)?;
        let mut safe = Vec::with_capacity(outcomes.len());
        for ((product, _), outcome) in verified.iter().zip(outcomes) {
            match outcome {
                Stored::Inserted => self.stats.products_stored += 1,
                Stored::Duplicate => self.stats.duplicates += 1,
                Stored::Conflict => {
                    // acknowledged all the same: flight would send it again for ever, and the
                    // link budget with it; the newcomer is kept aside for the operator
                    self.stats.conflicts += 1;
                    tracing::error!(station = %self.station, id = product.id, "a different product arrived under a stored id; the stored one is kept, the newcomer set aside among the conflicts");
                }
            }
            safe.push(product.id);
        }
        Ok(safe)
    }
}
