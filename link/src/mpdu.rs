//! Packing space packets into the packet zones of successive frames of one virtual channel, and
//! extracting them again (CCSDS 732.0-B M_PDU). Packets run across frame boundaries; the first
//! header pointer lets a receiver find the next packet after a lost frame.

use std::collections::VecDeque;

use crate::frame::{FHP_IDLE_DATA, FHP_NO_PACKET_START};
use crate::packet::{self, HEADER_LEN, IDLE_APID, PacketHeader};
use spacepackets::SequenceFlags;

/// The sending side of one virtual channel.
#[derive(Debug)]
pub struct MpduPacker {
    zone_len: usize,
    pending: VecDeque<u8>,
    /// Offsets in the virtual channel's byte stream where packets start.
    starts: VecDeque<u64>,
    /// Stream offset of `pending[0]`.
    position: u64,
}

impl MpduPacker {
    pub fn new(zone_len: usize) -> Self {
        Self { zone_len, pending: VecDeque::new(), starts: VecDeque::new(), position: 0 }
    }

    /// Queues whole packets (one or more, back to back); each one's start is recorded for the
    /// first header pointers.
    pub fn push_packet(&mut self, packets: &[u8]) {
        let base = self.position + self.pending.len() as u64;
        let mut offset = 0;
        while offset < packets.len() {
            self.starts.push_back(base + offset as u64);
            match PacketHeader::parse(&packets[offset..]) {
                Ok(header) => offset += header.packet_len,
                Err(_) => break,
            }
        }
        self.pending.extend(packets);
    }

    /// Bytes queued and not yet in a frame.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Whether a full packet zone is queued.
    pub fn has_full_zone(&self) -> bool {
        self.pending.len() >= self.zone_len
    }

    /// Completes the last partial zone with an idle packet, so that everything queued can be sent.
    /// An idle packet is at least 7 bytes, so a gap smaller than that spills into one more zone.
    pub fn pad(&mut self) {
        let gap = (self.zone_len - self.pending.len() % self.zone_len) % self.zone_len;
        if gap == 0 {
            return;
        }
        let idle_len = if gap > HEADER_LEN { gap } else { gap + self.zone_len };
        let mut idle = Vec::with_capacity(idle_len);
        packet::build(IDLE_APID, SequenceFlags::Unsegmented, 0, &vec![0x55; idle_len - HEADER_LEN], &mut idle);
        self.push_packet(&idle);
    }

    /// Fills `zone` (exactly one packet zone) with the next queued bytes and returns its first
    /// header pointer; `None` unless a full zone is queued.
    pub fn next_zone(&mut self, zone: &mut [u8]) -> Option<u16> {
        if !self.has_full_zone() {
            return None;
        }
        let end = self.position + self.zone_len as u64;
        while self.starts.front().is_some_and(|&s| s < self.position) {
            self.starts.pop_front();
        }
        let pointer = match self.starts.front() {
            Some(&start) if start < end => (start - self.position) as u16,
            _ => FHP_NO_PACKET_START,
        };
        let (front, back) = self.pending.as_slices();
        let from_front = front.len().min(self.zone_len);
        zone[..from_front].copy_from_slice(&front[..from_front]);
        zone[from_front..].copy_from_slice(&back[..self.zone_len - from_front]);
        self.pending.drain(..self.zone_len);
        self.position = end;
        Some(pointer)
    }
}

/// Counters of packet extraction on one or more virtual channels.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExtractionStats {
    /// Partial packets dropped because a frame was lost or the stream lost packet sync.
    pub partial_packets_dropped: u64,
    /// Frames whose first header pointer disagreed with the packet lengths (resynchronized there).
    pub pointer_mismatches: u64,
    /// Idle (fill) packets discarded.
    pub idle_packets: u64,
}

/// The receiving side of one virtual channel.
#[derive(Debug, Default)]
pub struct MpduUnpacker {
    buffer: Vec<u8>,
    in_sync: bool,
}

impl MpduUnpacker {
    /// Takes the packet zone of the next frame. `continuous` is false when frames were lost since
    /// the previous one. Each whole packet found (idle packets excepted) goes to `deliver`.
    pub fn push_zone(
        &mut self,
        pointer: u16,
        zone: &[u8],
        continuous: bool,
        stats: &mut ExtractionStats,
        deliver: &mut impl FnMut(&[u8]),
    ) {
        if !continuous {
            self.lose_sync(stats);
        }
        if pointer == FHP_IDLE_DATA {
            return;
        }
        let pointer_valid = usize::from(pointer) < zone.len();
        if let Some(next_start) = self.next_packet_start().filter(|_| self.in_sync) {
            let expected = (next_start < zone.len()).then_some(next_start);
            let announced = pointer_valid.then_some(usize::from(pointer));
            if expected != announced {
                stats.pointer_mismatches += 1;
                self.lose_sync(stats);
            }
        }
        let zone = if self.in_sync {
            zone
        } else if pointer_valid {
            self.in_sync = true;
            &zone[usize::from(pointer)..]
        } else {
            return;
        };
        self.buffer.extend_from_slice(zone);
        self.extract(stats, deliver);
    }

    /// Offset in the next zone where the next packet header starts, when the buffer tells.
    fn next_packet_start(&self) -> Option<usize> {
        if self.buffer.is_empty() {
            return Some(0);
        }
        let header = PacketHeader::parse(&self.buffer).ok()?;
        Some(header.packet_len - self.buffer.len())
    }

    fn lose_sync(&mut self, stats: &mut ExtractionStats) {
        if !self.buffer.is_empty() {
            stats.partial_packets_dropped += 1;
        }
        self.buffer.clear();
        self.in_sync = false;
    }

    fn extract(&mut self, stats: &mut ExtractionStats, deliver: &mut impl FnMut(&[u8])) {
        let mut offset = 0;
        while self.buffer.len() - offset >= HEADER_LEN {
            let header = match PacketHeader::parse(&self.buffer[offset..]) {
                Ok(header) => header,
                Err(_) => {
                    self.buffer.drain(..offset);
                    self.lose_sync(stats);
                    return;
                }
            };
            let end = offset + header.packet_len;
            if end > self.buffer.len() {
                break;
            }
            if header.apid == IDLE_APID {
                stats.idle_packets += 1;
            } else {
                deliver(&self.buffer[offset..end]);
            }
            offset = end;
        }
        self.buffer.drain(..offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::SequenceCounters;

    fn packets(lengths: &[usize]) -> Vec<Vec<u8>> {
        let mut counters = SequenceCounters::default();
        lengths
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let mut out = Vec::new();
                counters.segment(0x100 + i as u16, &vec![i as u8; len], 65536, &mut out);
                out
            })
            .collect()
    }

    fn zones(packer: &mut MpduPacker, zone_len: usize) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        let mut zone = vec![0; zone_len];
        while let Some(pointer) = packer.next_zone(&mut zone) {
            out.push((pointer, zone.clone()));
        }
        out
    }

    #[test]
    fn packets_cross_zones_and_come_back_whole() {
        let sent = packets(&[10, 300, 1, 95, 2000, 3]);
        let mut packer = MpduPacker::new(100);
        for p in &sent {
            packer.push_packet(p);
        }
        packer.pad();
        assert_eq!(packer.pending_len() % 100, 0);
        let zones = zones(&mut packer, 100);
        assert_eq!(zones[0].0, 0);
        assert_eq!(zones[1].0, FHP_NO_PACKET_START, "the 306-byte packet spans zone 1");
        let mut unpacker = MpduUnpacker::default();
        let mut stats = ExtractionStats::default();
        let mut received = Vec::new();
        for (pointer, zone) in &zones {
            unpacker.push_zone(*pointer, zone, true, &mut stats, &mut |p| received.push(p.to_vec()));
        }
        assert_eq!(received, sent);
        assert_eq!(stats.idle_packets, 1);
        assert_eq!(stats.pointer_mismatches, 0);
    }

    #[test]
    fn several_packets_in_one_push_each_get_a_pointer() {
        let sent = packets(&[150, 150, 150]);
        let mut packer = MpduPacker::new(100);
        packer.push_packet(&sent.concat());
        packer.pad();
        let zones = zones(&mut packer, 100);
        // packet starts at 0, 156 and 312: zone 1 points at 56, zone 3 at 12
        let pointers: Vec<u16> = zones.iter().map(|z| z.0).collect();
        assert_eq!(pointers[..4], [0, 56, FHP_NO_PACKET_START, 12]);
    }

    #[test]
    fn a_lost_zone_loses_only_the_packets_it_touched() {
        let sent = packets(&[150, 150, 150, 150]);
        let mut packer = MpduPacker::new(100);
        for p in &sent {
            packer.push_packet(p);
        }
        packer.pad();
        let zones = zones(&mut packer, 100);
        let mut unpacker = MpduUnpacker::default();
        let mut stats = ExtractionStats::default();
        let mut received = Vec::new();
        let mut continuous = true;
        for (i, (pointer, zone)) in zones.iter().enumerate() {
            if i == 2 {
                continuous = false;
                continue;
            }
            unpacker.push_zone(*pointer, zone, continuous, &mut stats, &mut |p| received.push(p.to_vec()));
            continuous = true;
        }
        // zone 2 (bytes 200..300) held only the middle of packet 1 (156..312); the pointer of
        // zone 3 finds packet 2 again
        assert_eq!(received, vec![sent[0].clone(), sent[2].clone(), sent[3].clone()]);
        assert_eq!(stats.partial_packets_dropped, 1);
    }

    #[test]
    fn a_lying_pointer_resynchronizes_there() {
        let sent = packets(&[50, 50]);
        let mut unpacker = MpduUnpacker::default();
        let mut stats = ExtractionStats::default();
        let mut received = Vec::new();
        let mut zone = sent[0].clone();
        zone.extend(&sent[1][..20]);
        unpacker.push_zone(0, &zone, true, &mut stats, &mut |p| received.push(p.to_vec()));
        // the next frame claims a packet starts at 0, but 36 bytes of packet 1 are still due
        let mut next = sent[0].clone();
        next.resize(zone.len(), 0x55);
        unpacker.push_zone(0, &next, true, &mut stats, &mut |p| received.push(p.to_vec()));
        assert_eq!(stats.pointer_mismatches, 1);
        assert_eq!(received, vec![sent[0].clone(), sent[0].clone()]);
    }
}
