//! Arbitrary packet zones into the M_PDU unpacker, and what comes out into the segment
//! reassembler: no panic, and no product larger than the bound.
#![no_main]

use kestrel_link::mpdu::{ExtractionStats, MpduUnpacker};
use kestrel_link::packet::{MAX_PRODUCT_LEN, PacketHeader, SegmentReassembler};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = PacketHeader::parse(data);
    let mut unpacker = MpduUnpacker::default();
    let mut reassembler = SegmentReassembler::default();
    let mut stats = ExtractionStats::default();
    // the input is a run of records: pointer (2 bytes), continuity flag (1), zone length (1), zone
    let mut rest = data;
    while rest.len() >= 4 {
        let pointer = u16::from_be_bytes([rest[0], rest[1]]) & 0x7FF;
        let continuous = rest[2] & 1 == 1;
        let len = usize::from(rest[3]).min(rest.len() - 4);
        let zone = &rest[4..4 + len];
        unpacker.push_zone(pointer, zone, continuous, &mut stats, &mut |packet| {
            assert!(PacketHeader::parse(packet).is_ok());
            if let Some((_, product)) = reassembler.push(packet) {
                assert!(product.len() <= MAX_PRODUCT_LEN);
            }
        });
        rest = &rest[4 + len..];
    }
});
