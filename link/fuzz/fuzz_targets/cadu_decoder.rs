//! Arbitrary bytes into the CADU decoder, plain and authenticated, split into two pushes at a
//! point the input chooses. It must never panic, and must never deliver a packet that does not
//! parse as one.
#![no_main]

use kestrel_link::decoder::CaduDecoder;
use kestrel_link::packet::PacketHeader;
use kestrel_link::profile::LinkProfile;
use kestrel_link::security::SecurityAssociation;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else { return };
    let split = usize::from(split) * stream.len() / 256;
    let secured = LinkProfile {
        spacecraft_id: Some(42),
        rs_interleave: 1 + usize::from(split as u8 % 8),
        frame_error_control: true,
        security: Some(SecurityAssociation::new(1, &[3; 32], false)),
    };
    for profile in [LinkProfile::plain_ccsds(), secured] {
        let mut decoder = CaduDecoder::new(profile);
        let mut check = |d: kestrel_link::decoder::Delivered<'_>| {
            let header = PacketHeader::parse(d.packet).expect("delivered packets parse");
            assert_eq!(header.packet_len, d.packet.len());
        };
        decoder.push(&stream[..split], &mut check);
        decoder.push(&stream[split..], &mut check);
        decoder.finish(&mut check);
        let stats = decoder.stats();
        assert_eq!(stats.bytes, stream.len() as u64);
    }
});
