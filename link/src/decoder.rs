//! The receiving end: a raw byte stream in, verified space packets out, with a count of everything
//! that went wrong. Order per CADU: sync → derandomize → Reed-Solomon → (only now) read the frame
//! header → FECF → spacecraft id → authentication and anti-replay → frame-count continuity →
//! packet extraction. Anything that fails a step is counted and dropped, never delivered.

use std::collections::BTreeMap;

use crate::coding::Coding;
use crate::fecf;
use crate::frame::{self, FrameLayout, IDLE_VCID, PrimaryHeader};
use crate::mpdu::{ExtractionStats, MpduUnpacker};
use crate::packet::PacketHeader;
use crate::profile::LinkProfile;
use crate::security::{Direction, ReplayGuard, SecurityError};
use crate::sync::{Found, SyncStats, Synchronizer};

/// How many individual problems a decoder remembers (with their byte offsets); the counters
/// keep counting past it.
pub const MAX_ISSUES: usize = 32;

/// Counters of one virtual channel.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ChannelStats {
    pub frames: u64,
    /// Frames missing according to the frame counts.
    pub missing: u64,
}

/// One problem, located in the input stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Issue {
    /// Byte offset of the CADU's sync marker in the input.
    pub byte_offset: u64,
    pub what: String,
}

/// Everything a decoder counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DecodeStats {
    pub bytes: u64,
    pub cadus: u64,
    pub sync: SyncStats,
    /// Symbols Reed-Solomon corrected.
    pub rs_corrected_symbols: u64,
    /// CADUs with at least one corrected symbol.
    pub rs_corrected_cadus: u64,
    /// CADUs Reed-Solomon could not correct (dropped).
    pub rs_uncorrectable: u64,
    pub fecf_errors: u64,
    pub bad_frame_version: u64,
    pub other_spacecraft: u64,
    pub idle_frames: u64,
    pub duplicate_frames: u64,
    pub authentication_failures: u64,
    pub replayed_frames: u64,
    pub unknown_spi: u64,
    pub virtual_channels: BTreeMap<u8, ChannelStats>,
    /// Packets delivered per APID.
    pub packets: BTreeMap<u16, u64>,
    /// Packets missing per APID by their 14-bit sequence counts (a jump between two delivered
    /// packets of one APID; idle packets, APID 2047, are not counted).
    pub sequence_gaps: BTreeMap<u16, u64>,
    pub extraction: ExtractionStats,
    /// The first problems, with where they are.
    pub issues: Vec<Issue>,
}

impl DecodeStats {
    pub fn frames(&self) -> u64 {
        self.virtual_channels.values().map(|c| c.frames).sum()
    }

    pub fn missing_frames(&self) -> u64 {
        self.virtual_channels.values().map(|c| c.missing).sum()
    }

    pub fn packets_total(&self) -> u64 {
        self.packets.values().sum()
    }

    fn note(&mut self, byte_offset: u64, what: impl Into<String>) {
        if self.issues.len() < MAX_ISSUES {
            self.issues.push(Issue { byte_offset, what: what.into() });
        }
    }
}

/// A packet as delivered, with the virtual channel it came on.
#[derive(Debug, Clone, Copy)]
pub struct Delivered<'a> {
    pub vcid: u8,
    pub packet: &'a [u8],
}

#[derive(Debug, Default)]
struct RxChannel {
    last_count: Option<u32>,
    unpacker: MpduUnpacker,
}

#[derive(Debug)]
pub struct CaduDecoder {
    profile: LinkProfile,
    layout: FrameLayout,
    sync: Synchronizer,
    coding: Coding,
    channels: BTreeMap<u8, RxChannel>,
    /// The last sequence count delivered per APID.
    sequence_counts: BTreeMap<u16, u16>,
    replay: ReplayGuard,
    block: Vec<u8>,
    stats: DecodeStats,
}

impl CaduDecoder {
    pub fn new(profile: LinkProfile) -> Self {
        Self::resuming(profile, ReplayGuard::default())
    }

    /// A decoder that refuses every frame at or below what `replay` has already accepted (the
    /// marks a receiver keeps across connections and restarts).
    pub fn resuming(profile: LinkProfile, replay: ReplayGuard) -> Self {
        Self {
            layout: profile.layout(),
            sync: Synchronizer::with_marker(profile.cadu_len(), profile.asm),
            coding: Coding::new(&profile),
            block: Vec::with_capacity(profile.cadu_len()),
            channels: BTreeMap::new(),
            sequence_counts: BTreeMap::new(),
            replay,
            stats: DecodeStats::default(),
            profile,
        }
    }

    /// The anti-replay marks so far: per virtual channel, the last sequence number accepted.
    pub fn replay_marks(&self) -> Vec<(u8, u64)> {
        self.replay.marks()
    }

    /// The counters so far.
    pub fn stats(&self) -> DecodeStats {
        let mut stats = self.stats.clone();
        stats.sync = self.sync.stats().clone();
        stats.bytes = self.sync.bytes_received();
        stats
    }

    /// Takes the next bytes of the stream; every packet completed goes to `deliver`.
    pub fn push(&mut self, bytes: &[u8], deliver: &mut impl FnMut(Delivered<'_>)) {
        self.sync.push(bytes);
        self.drain(false, deliver);
    }

    /// Ends the stream: decodes what can still be decoded.
    pub fn finish(&mut self, deliver: &mut impl FnMut(Delivered<'_>)) {
        self.drain(true, deliver);
    }

    fn drain(&mut self, end_of_stream: bool, deliver: &mut impl FnMut(Delivered<'_>)) {
        loop {
            let Some(block) = self.sync.next_block(end_of_stream) else {
                return;
            };
            let offset = block.bit_offset / 8;
            let flywheel = block.found == Found::Flywheel;
            self.block.clear();
            self.block.extend_from_slice(block.data);
            self.decode_block(offset, flywheel, deliver);
        }
    }

    fn decode_block(&mut self, offset: u64, flywheel: bool, deliver: &mut impl FnMut(Delivered<'_>)) {
        self.stats.cadus += 1;
        match self.coding.decode(&mut self.block) {
            Ok(0) => {}
            Ok(corrected) => {
                self.stats.rs_corrected_symbols += corrected as u64;
                self.stats.rs_corrected_cadus += 1;
            }
            Err(e) => {
                self.stats.rs_uncorrectable += 1;
                let how = if flywheel { " (found by the flywheel: no sync marker where expected)" } else { "" };
                self.stats.note(offset, format!("{e}{how}; CADU dropped"));
                return;
            }
        }
        let layout = self.layout;
        let frame = &mut self.block[..layout.frame_len];
        if layout.fecf && !fecf::verify(frame) {
            self.stats.fecf_errors += 1;
            self.stats.note(offset, "frame error control (CRC-16) mismatch; frame dropped");
            return;
        }
        let header = match PrimaryHeader::parse(frame) {
            Ok(header) => header,
            Err(e) => {
                self.stats.bad_frame_version += 1;
                self.stats.note(offset, format!("{e}; frame dropped"));
                return;
            }
        };
        if self.profile.spacecraft_id.is_some_and(|id| id != header.spacecraft_id) {
            self.stats.other_spacecraft += 1;
            return;
        }
        if header.vcid == IDLE_VCID {
            self.stats.idle_frames += 1;
            return;
        }
        if let Some(security) = &self.profile.security {
            let verified = security
                .verify(Direction::Downlink, header.vcid, frame, layout.security_start(), layout.mpdu_end())
                .and_then(|arsn| self.replay.accept(header.vcid, arsn));
            if let Err(e) = verified {
                match e {
                    SecurityError::UnknownSpi(_) => self.stats.unknown_spi += 1,
                    SecurityError::Authentication => self.stats.authentication_failures += 1,
                    SecurityError::Replay { .. } => self.stats.replayed_frames += 1,
                }
                self.stats.note(offset, format!("virtual channel {}: {e}; frame dropped", header.vcid));
                return;
            }
        }
        let channel = self.channels.entry(header.vcid).or_default();
        let channel_stats = self.stats.virtual_channels.entry(header.vcid).or_default();
        let continuous = match channel.last_count {
            Some(last) if last == header.frame_count => {
                self.stats.duplicate_frames += 1;
                return;
            }
            Some(last) => {
                let missing = frame::frames_missing(last, header.frame_count);
                channel_stats.missing += u64::from(missing);
                missing == 0
            }
            None => false,
        };
        channel.last_count = Some(header.frame_count);
        channel_stats.frames += 1;

        let mpdu = &frame[layout.mpdu_start()..layout.mpdu_end()];
        let pointer = frame::first_header_pointer(mpdu);
        let zone = &mpdu[frame::MPDU_HEADER_LEN..];
        let vcid = header.vcid;
        let DecodeStats { packets, sequence_gaps, extraction, .. } = &mut self.stats;
        let counts = &mut self.sequence_counts;
        channel.unpacker.push_zone(pointer, zone, continuous, extraction, &mut |packet| {
            if let Ok(header) = PacketHeader::parse(packet) {
                *packets.entry(header.apid).or_default() += 1;
                if let Some(last) = counts.insert(header.apid, header.sequence_count) {
                    let missing = header.sequence_count.wrapping_sub(last).wrapping_sub(1) & 0x3FFF;
                    if missing > 0 {
                        *sequence_gaps.entry(header.apid).or_default() += u64::from(missing);
                    }
                }
            }
            deliver(Delivered { vcid, packet });
        });
    }
}
