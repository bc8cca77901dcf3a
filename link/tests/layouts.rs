//! Every AOS physical-channel option the link profile describes, through the encoder and the
//! decoder: Reed-Solomon interleave 1 to 8 or none, virtual fill, the randomizer over the code
//! block, over the frame data before coding (Terra's) or off, another
//! sync marker, an insert zone, the operational control field, the FECF, and SDLS security or
//! none. Each combination must carry its packets back bit for bit, with a burst of errors
//! corrected where there is Reed-Solomon.

use kestrel_link::decoder::CaduDecoder;
use kestrel_link::encoder::{CaduEncoder, EncoderState};
use kestrel_link::noise::{Rng, burst};
use kestrel_link::packet::SequenceCounters;
use kestrel_link::profile::{LinkProfile, Randomizer};
use kestrel_link::security::SecurityAssociation;

/// Packets of a few sizes on two APIDs, one spanning several frames.
fn packets() -> Vec<Vec<u8>> {
    let mut counters = SequenceCounters::default();
    [(100u16, 40usize), (101, 700), (100, 3000), (101, 9), (100, 257)]
        .iter()
        .enumerate()
        .map(|(i, &(apid, len))| {
            let data: Vec<u8> = (0..len).map(|b| (b * 31 + i * 7) as u8).collect();
            let mut out = Vec::new();
            counters.segment(apid, &data, 4096, &mut out);
            out
        })
        .collect()
}

fn round_trip(profile: &LinkProfile, corrupt: bool) -> Vec<Vec<u8>> {
    let mut encoder = CaduEncoder::new(profile.clone(), EncoderState::default());
    let mut stream = Vec::new();
    for packet in packets() {
        encoder.push_packets(1, &packet);
        encoder.emit_full_frames(&mut stream);
    }
    encoder.flush(&mut stream);
    assert_eq!(stream.len() % profile.cadu_len(), 0);
    if corrupt {
        // 8 bytes of errors inside the second CADU: within what any interleave corrects
        let at = profile.cadu_len() + 40;
        burst(&mut stream, at, 8, &mut Rng::new(7));
    }
    let mut decoder = CaduDecoder::new(profile.clone());
    let mut received = Vec::new();
    decoder.push(&stream, &mut |d| received.push(d.packet.to_vec()));
    decoder.finish(&mut |d| received.push(d.packet.to_vec()));
    let stats = decoder.stats();
    assert_eq!((stats.authentication_failures, stats.fecf_errors, stats.rs_uncorrectable), (0, 0, 0), "{profile:?}");
    received
}

#[test]
fn every_layout_option_carries_packets_back_bit_for_bit() {
    let expected = packets();
    let mut checked = 0;
    for rs_interleave in [0, 1, 4, 5, 8] {
        for virtual_fill in [0, 40] {
            if rs_interleave == 0 && virtual_fill > 0 {
                continue;
            }
            for randomizer in [Randomizer::CodeBlock, Randomizer::FrameData, Randomizer::Off] {
                for insert_zone_len in [0, 2, 9] {
                    for operational_control_field in [false, true] {
                        for frame_error_control in [false, true] {
                            for secured in [false, true] {
                                let profile = LinkProfile {
                                    spacecraft_id: Some(42),
                                    rs_interleave,
                                    virtual_fill,
                                    uncoded_frame_len: 892,
                                    asm: if randomizer == Randomizer::Off { 0x352E_F853 } else { 0x1ACF_FC1D },
                                    randomizer,
                                    insert_zone_len,
                                    operational_control_field,
                                    frame_error_control,
                                    security: secured.then(|| SecurityAssociation::new(3, &[5; 32], true)),
                                };
                                profile.check().expect("a valid layout");
                                // an uncoded channel without an FECF has nothing to find errors with
                                let corrupt = rs_interleave > 0;
                                assert_eq!(round_trip(&profile, corrupt), expected, "{profile:?}");
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    assert_eq!(checked, 9 * 3 * 3 * 2 * 2 * 2);
}

#[test]
fn shortened_and_uncoded_channels_have_the_cadu_lengths_real_missions_fly() {
    let jpss2 = LinkProfile { rs_interleave: 5, ..LinkProfile::plain_ccsds() };
    assert_eq!((jpss2.cadu_len(), jpss2.layout().frame_len), (1279, 1115));
    let shortened = LinkProfile { rs_interleave: 4, virtual_fill: 10, ..LinkProfile::plain_ccsds() };
    assert_eq!((shortened.cadu_len(), shortened.layout().frame_len), (1024 - 40, 892 - 40));
    let uncoded = LinkProfile { rs_interleave: 0, uncoded_frame_len: 0, ..LinkProfile::plain_ccsds() };
    assert!(uncoded.check().is_err(), "an uncoded channel needs its frame length");
    let crowded = LinkProfile { insert_zone_len: 880, ..LinkProfile::plain_ccsds() };
    assert!(crowded.check().is_err(), "an insert zone that leaves no packet zone");
}

#[test]
fn packets_lost_with_a_dropped_frame_are_counted_as_sequence_gaps_of_their_apid() {
    let profile = LinkProfile { insert_zone_len: 2, ..LinkProfile::plain_ccsds() };
    let mut counters = SequenceCounters::default();
    let mut encoder = CaduEncoder::new(profile.clone(), EncoderState::default());
    let mut stream = Vec::new();
    let sent = 200u64;
    for i in 0..sent {
        let mut packet = Vec::new();
        counters.segment(100, &[i as u8; 50], 4096, &mut packet);
        encoder.push_packets(1, &packet);
        encoder.emit_full_frames(&mut stream);
    }
    encoder.flush(&mut stream);
    let cadu = profile.cadu_len();
    stream.drain(3 * cadu..4 * cadu);
    let mut decoder = CaduDecoder::new(profile);
    let mut received = 0u64;
    decoder.push(&stream, &mut |_| received += 1);
    decoder.finish(&mut |_| received += 1);
    let stats = decoder.stats();
    assert!(received < sent - 10, "a frame holds more than ten of these packets");
    assert_eq!(stats.sequence_gaps.get(&100), Some(&(sent - received)));
}
