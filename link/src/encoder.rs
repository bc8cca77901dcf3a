//! The sending end: space packets in, CADUs out (packets → M_PDU → AOS frame → security → FECF →
//! Reed-Solomon → randomizer → ASM).

use std::collections::BTreeMap;

use crate::coding::Coding;
use crate::fecf;
use crate::frame::{self, FHP_IDLE_DATA, FrameLayout, IDLE_VCID, PrimaryHeader};
use crate::mpdu::MpduPacker;
use crate::profile::LinkProfile;
use crate::security::Direction;
use crate::sync::ASM_LEN;

/// The counters an encoder must resume from after a restart, so that frame counts continue and
/// no anti-replay sequence number is ever used twice.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EncoderState {
    /// Next frame count per virtual channel.
    pub frame_counts: BTreeMap<u8, u32>,
    /// Next anti-replay sequence number.
    pub next_arsn: u64,
}

#[derive(Debug)]
struct Channel {
    packer: MpduPacker,
}

#[derive(Debug)]
pub struct CaduEncoder {
    profile: LinkProfile,
    layout: FrameLayout,
    coding: Coding,
    channels: BTreeMap<u8, Channel>,
    state: EncoderState,
    zone: Vec<u8>,
}

impl CaduEncoder {
    /// An encoder for `profile`, which must name a spacecraft id.
    pub fn new(profile: LinkProfile, state: EncoderState) -> Self {
        let layout = profile.layout();
        let coding = Coding::new(&profile);
        Self { zone: vec![0; layout.packet_zone_len()], profile, layout, coding, channels: BTreeMap::new(), state }
    }

    pub fn state(&self) -> &EncoderState {
        &self.state
    }

    pub fn cadu_len(&self) -> usize {
        self.profile.cadu_len()
    }

    /// Queues whole packets (back to back) on a virtual channel (0 to 62).
    pub fn push_packets(&mut self, vcid: u8, packets: &[u8]) {
        assert!(vcid < IDLE_VCID, "virtual channel {vcid} is reserved or out of range");
        let zone_len = self.layout.packet_zone_len();
        self.channels
            .entry(vcid)
            .or_insert_with(|| Channel { packer: MpduPacker::new(zone_len) })
            .packer
            .push_packet(packets);
    }

    /// Bytes queued on all channels and not yet framed.
    pub fn pending_len(&self) -> usize {
        self.channels.values().map(|c| c.packer.pending_len()).sum()
    }

    /// Appends a CADU for every full frame queued, lowest virtual channel (highest priority) first.
    /// Returns how many CADUs it appended.
    pub fn emit_full_frames(&mut self, out: &mut Vec<u8>) -> usize {
        let mut emitted = 0;
        let vcids: Vec<u8> = self.channels.keys().copied().collect();
        for vcid in vcids {
            while let Some(pointer) = self.next_zone(vcid) {
                self.append_cadu(vcid, pointer, out);
                emitted += 1;
            }
        }
        emitted
    }

    fn next_zone(&mut self, vcid: u8) -> Option<u16> {
        let channel = self.channels.get_mut(&vcid)?;
        channel.packer.next_zone(&mut self.zone)
    }

    /// Completes every partial frame with idle packets and appends all remaining CADUs.
    pub fn flush(&mut self, out: &mut Vec<u8>) -> usize {
        for channel in self.channels.values_mut() {
            channel.packer.pad();
        }
        self.emit_full_frames(out)
    }

    /// Appends one idle CADU (virtual channel 63), to keep the link busy between products.
    pub fn append_idle(&mut self, out: &mut Vec<u8>) {
        self.zone.fill(0x55);
        self.append_cadu(IDLE_VCID, FHP_IDLE_DATA, out);
    }

    fn append_cadu(&mut self, vcid: u8, pointer: u16, out: &mut Vec<u8>) {
        let layout = self.layout;
        let start = out.len();
        out.extend_from_slice(&self.profile.asm.to_be_bytes());
        out.resize(start + self.profile.cadu_len(), 0);
        let block = &mut out[start + ASM_LEN..];
        let frame = &mut block[..layout.frame_len];

        let count = self.state.frame_counts.entry(vcid).or_insert(0);
        let header = PrimaryHeader {
            spacecraft_id: self.profile.spacecraft_id.unwrap_or(0),
            vcid,
            frame_count: *count,
            replay: false,
        };
        *count = (*count + 1) % frame::FRAME_COUNT_MODULUS;
        header.write(frame);
        // the insert zone and the OCF stay zero: this sender has nothing to put in them
        frame[frame::PRIMARY_HEADER_LEN..layout.security_start()].fill(0);
        let mpdu = layout.mpdu_start();
        frame::write_mpdu_header(&mut frame[mpdu..], pointer);
        frame[mpdu + frame::MPDU_HEADER_LEN..layout.mpdu_end()].copy_from_slice(&self.zone);
        // idle frames carry nothing worth protecting and are dropped unread on the ground
        if let Some(security) = self.profile.security.as_ref().filter(|_| vcid != IDLE_VCID) {
            let arsn = self.state.next_arsn;
            self.state.next_arsn += 1;
            security.protect(Direction::Downlink, vcid, arsn, frame, layout.security_start(), layout.mpdu_end());
        }
        if layout.fecf {
            fecf::seal(frame);
        }
        self.coding.encode(block);
    }
}
