//! Space packets (CCSDS 133.0-B): the APID of each product kind, segmentation of products larger
//! than one packet, and their reassembly. Header encoding is `spacepackets`'.

use std::collections::HashMap;

use arbitrary_int::{u11, u14};
use spacepackets::{SequenceFlags, SpHeader};

/// Bytes in a space packet primary header.
pub const HEADER_LEN: usize = 6;
/// APID of idle packets (fill).
pub const IDLE_APID: u16 = 0x7FF;
/// Largest packet data field the standard allows.
pub const MAX_DATA_LEN: usize = 65536;
/// Largest product a reassembler accepts; a longer run of segments is dropped, not buffered.
pub const MAX_PRODUCT_LEN: usize = 64 << 20;

/// The APID of each product kind (downlink) and uplink message (docs/ICD.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[repr(u16)]
pub enum Apid {
    Housekeeping = 0x010,
    Event = 0x011,
    CommandReport = 0x012,
    Detections = 0x020,
    Chip = 0x021,
    Thumbnail = 0x022,
    Telecommand = 0x040,
    Acknowledgement = 0x041,
    UploadSegment = 0x042,
}

impl Apid {
    pub fn value(self) -> u16 {
        self as u16
    }
}

/// The fields of a packet header that the link uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    pub apid: u16,
    pub sequence_flags: SequenceFlags,
    pub sequence_count: u16,
    /// Total packet length, header included.
    pub packet_len: usize,
}

/// Why bytes are not a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet header needs 6 bytes, found {0}")]
    Short(usize),
    #[error("packet version {0} is not 0")]
    Version(u8),
}

impl PacketHeader {
    pub fn parse(bytes: &[u8]) -> Result<Self, PacketError> {
        if bytes.len() < HEADER_LEN {
            return Err(PacketError::Short(bytes.len()));
        }
        let version = bytes[0] >> 5;
        if version != 0 {
            return Err(PacketError::Version(version));
        }
        let (header, _) = SpHeader::from_be_bytes(bytes).map_err(|_| PacketError::Short(bytes.len()))?;
        Ok(Self {
            apid: header.apid().value(),
            sequence_flags: header.psc.seq_flags,
            sequence_count: header.psc.seq_count.value(),
            packet_len: usize::from(header.data_len) + 1 + HEADER_LEN,
        })
    }
}

/// Builds one telemetry packet. `data` must hold 1 to 65536 bytes.
pub fn build(apid: u16, flags: SequenceFlags, count: u16, data: &[u8], out: &mut Vec<u8>) {
    assert!((1..=MAX_DATA_LEN).contains(&data.len()), "packet data of {} bytes", data.len());
    let header = SpHeader::new_for_tm(u11::new(apid & 0x7FF), flags, u14::new(count & 0x3FFF), (data.len() - 1) as u16);
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    // the slice is exactly HEADER_LEN long, which is all write_to_slice needs
    let _ = header.write_to_slice(&mut out[start..]);
    out.extend_from_slice(data);
}

/// Per-APID 14-bit sequence counters of a packet source.
#[derive(Debug, Clone, Default)]
pub struct SequenceCounters {
    next: HashMap<u16, u16>,
}

impl SequenceCounters {
    pub fn with_start(start: impl IntoIterator<Item = (u16, u16)>) -> Self {
        Self { next: start.into_iter().collect() }
    }

    fn take(&mut self, apid: u16) -> u16 {
        let next = self.next.entry(apid).or_insert(0);
        let count = *next;
        *next = (count + 1) & 0x3FFF;
        count
    }

    /// The next count each APID will use (to checkpoint).
    pub fn snapshot(&self) -> Vec<(u16, u16)> {
        let mut all: Vec<_> = self.next.iter().map(|(&a, &c)| (a, c)).collect();
        all.sort_unstable();
        all
    }

    /// Packets for `payload` (not empty): one unsegmented packet when it fits in `max_data` bytes,
    /// else a first, continuation and last segments, appended to `out` back to back.
    pub fn segment(&mut self, apid: u16, payload: &[u8], max_data: usize, out: &mut Vec<u8>) -> usize {
        let max_data = max_data.clamp(1, MAX_DATA_LEN);
        if payload.len() <= max_data {
            build(apid, SequenceFlags::Unsegmented, self.take(apid), payload, out);
            return 1;
        }
        let chunks = payload.chunks(max_data);
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.enumerate() {
            let flags = match i {
                0 => SequenceFlags::FirstSegment,
                i if i == last => SequenceFlags::LastSegment,
                _ => SequenceFlags::ContinuationSegment,
            };
            build(apid, flags, self.take(apid), chunk, out);
        }
        last + 1
    }
}

/// Counters of the segment reassembler.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReassemblyStats {
    /// Partial products dropped: a segment missing, out of order, or too long.
    pub incomplete_dropped: u64,
}

/// Rebuilds products from their packets, per APID. A gap in the sequence count drops the partial
/// product: a product is delivered whole or not at all.
#[derive(Debug, Default)]
pub struct SegmentReassembler {
    partial: HashMap<u16, (u16, Vec<u8>)>,
    stats: ReassemblyStats,
}

impl SegmentReassembler {
    pub fn stats(&self) -> &ReassemblyStats {
        &self.stats
    }

    /// Takes one whole packet; returns the APID and payload of a product it completes.
    pub fn push(&mut self, packet: &[u8]) -> Option<(u16, Vec<u8>)> {
        let header = PacketHeader::parse(packet).ok()?;
        let data = packet.get(HEADER_LEN..header.packet_len)?;
        let apid = header.apid;
        let count = header.sequence_count;
        let follows = |previous: u16| (previous + 1) & 0x3FFF == count;
        match header.sequence_flags {
            SequenceFlags::Unsegmented => {
                self.drop_partial(apid);
                Some((apid, data.to_vec()))
            }
            SequenceFlags::FirstSegment => {
                self.drop_partial(apid);
                self.partial.insert(apid, (count, data.to_vec()));
                None
            }
            flags => {
                let Some((previous, buffer)) = self.partial.get_mut(&apid) else {
                    self.stats.incomplete_dropped += 1;
                    return None;
                };
                if !follows(*previous) || buffer.len() + data.len() > MAX_PRODUCT_LEN {
                    self.drop_partial(apid);
                    return None;
                }
                *previous = count;
                buffer.extend_from_slice(data);
                if flags == SequenceFlags::LastSegment {
                    self.partial.remove(&apid).map(|(_, payload)| (apid, payload))
                } else {
                    None
                }
            }
        }
    }

    fn drop_partial(&mut self, apid: u16) {
        if self.partial.remove(&apid).is_some() {
            self.stats.incomplete_dropped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(stream: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            let len = PacketHeader::parse(rest).expect("header").packet_len;
            out.push(&rest[..len]);
            rest = &rest[len..];
        }
        out
    }

    #[test]
    fn header_fields_round_trip() {
        let mut out = Vec::new();
        build(0x021, SequenceFlags::FirstSegment, 0x3FFF, b"abc", &mut out);
        let header = PacketHeader::parse(&out).expect("header");
        assert_eq!(header.apid, 0x021);
        assert_eq!(header.sequence_flags, SequenceFlags::FirstSegment);
        assert_eq!(header.sequence_count, 0x3FFF);
        assert_eq!(header.packet_len, 9);
        assert_eq!(out[..2], [0x00, 0x21], "version 0, telemetry, no secondary header");
        assert_eq!(PacketHeader::parse(&[0xE0, 0, 0, 0, 0, 0]), Err(PacketError::Version(7)));
    }

    #[test]
    fn large_products_are_segmented_and_reassembled() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let mut counters = SequenceCounters::with_start([(0x021, 0x3FFE)]);
        let mut stream = Vec::new();
        assert_eq!(counters.segment(0x021, &payload, 4096, &mut stream), 3);
        assert_eq!(counters.segment(0x010, b"hk", 4096, &mut stream), 1);
        let mut reassembler = SegmentReassembler::default();
        let products: Vec<_> = packets(&stream).into_iter().filter_map(|p| reassembler.push(p)).collect();
        assert_eq!(products, vec![(0x021, payload.clone()), (0x010, b"hk".to_vec())]);
        assert_eq!(counters.snapshot(), vec![(0x010, 1), (0x021, 1)]);
    }

    #[test]
    fn a_missing_segment_drops_the_product() {
        let payload = vec![7u8; 9000];
        let mut counters = SequenceCounters::default();
        let mut stream = Vec::new();
        counters.segment(0x020, &payload, 4000, &mut stream);
        counters.segment(0x020, &payload, 4000, &mut stream);
        let all = packets(&stream);
        let mut reassembler = SegmentReassembler::default();
        let delivered: Vec<_> =
            all.iter().enumerate().filter(|(i, _)| *i != 1).filter_map(|(_, p)| reassembler.push(p)).collect();
        assert_eq!(delivered.len(), 1, "only the second, complete product");
        assert_eq!(delivered[0].1, payload);
        assert_eq!(reassembler.stats().incomplete_dropped, 1);
    }
}
