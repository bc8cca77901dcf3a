//! Real packets through our encoder, a noisy channel and our decoder; and our streams through the
//! `ccsds` crate's own decoder.

use std::path::PathBuf;

use kestrel_link::decoder::{CaduDecoder, DecodeStats};
use kestrel_link::encoder::{CaduEncoder, EncoderState};
use kestrel_link::noise::{self, Rng};
use kestrel_link::packet::PacketHeader;
use kestrel_link::profile::{LinkProfile, virtual_channel};
use kestrel_link::security::SecurityAssociation;

const KEY: [u8; 32] = *b"kestrel-test-key-kestrel-test-ke";

fn real_packets() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/packets");
    let mut packets = Vec::new();
    for name in [
        "J01_G011_LZ_2021-04-09T00-00-00Z_V01.DAT1",
        "CYGNSS_F7_L0_2022_086_10_15_V01_F__first101pkts.tlm",
        "ecm_raw2.bin",
    ] {
        let bytes = std::fs::read(dir.join(name)).expect("packet file");
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let len = PacketHeader::parse(rest).expect("real packet").packet_len;
            packets.push(rest[..len].to_vec());
            rest = &rest[len..];
        }
    }
    assert_eq!(packets.len(), 7200 + 101 + 1030);
    packets
}

fn flight_profile(key: &[u8; 32]) -> LinkProfile {
    LinkProfile {
        spacecraft_id: Some(42),
        frame_error_control: true,
        security: Some(SecurityAssociation::new(1, key, false)),
        ..LinkProfile::plain_ccsds()
    }
}

/// Packets framed into a CADU stream, as `flight-tools frame` does; packets of one virtual channel
/// keep their order.
fn encode(profile: &LinkProfile, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut encoder = CaduEncoder::new(profile.clone(), EncoderState::default());
    let mut stream = Vec::new();
    for packet in packets {
        let apid = PacketHeader::parse(packet).expect("header").apid;
        encoder.push_packets(virtual_channel(apid), packet);
        encoder.emit_full_frames(&mut stream);
    }
    encoder.flush(&mut stream);
    stream
}

fn decode(profile: &LinkProfile, stream: &[u8]) -> (DecodeStats, Vec<Vec<u8>>) {
    let mut decoder = CaduDecoder::new(profile.clone());
    let mut packets = Vec::new();
    for chunk in stream.chunks(65_536) {
        decoder.push(chunk, &mut |d| packets.push(d.packet.to_vec()));
    }
    decoder.finish(&mut |d| packets.push(d.packet.to_vec()));
    (decoder.stats(), packets)
}

#[test]
fn clean_round_trip_is_bit_exact() {
    let profile = flight_profile(&KEY);
    let packets = real_packets();
    let stream = encode(&profile, &packets);
    let (stats, received) = decode(&profile, &stream);
    assert_eq!(received, packets);
    assert_eq!(stats.rs_corrected_symbols, 0);
    assert_eq!((stats.missing_frames(), stats.authentication_failures, stats.fecf_errors), (0, 0, 0));
}

#[test]
fn a_noisy_channel_with_bursts_slips_and_bad_asms_loses_nothing() {
    let profile = flight_profile(&KEY);
    let packets = real_packets();
    let clean = encode(&profile, &packets);
    let cadu = profile.cadu_len();
    let cadus = clean.len() / cadu;
    let mut rng = Rng::new(2026);
    let mut noisy = clean.clone();
    let flipped = noise::flip_bits(&mut noisy, 1e-4, &mut rng);
    // bursts of 40 bytes spread over the 4 interleaved codewords: 10 symbols each, correctable
    for i in 0..20 {
        noise::burst(&mut noisy, (i * cadus / 20) * cadu + 300, 40, &mut rng);
    }
    // sync markers with 4 to 6 wrong bits: beyond the search tolerance, within the lock's
    for i in 0..10 {
        let at = (5 + i * cadus / 10) * cadu;
        noisy[at] ^= 0b1011_0000;
        noisy[at + 2] ^= 0b0000_0101;
    }
    // one destroyed sync marker: the flywheel must carry the block through
    let destroyed = cadus / 3 * cadu;
    noisy[destroyed..destroyed + 4].copy_from_slice(&[0x00, 0x00, 0x00, 0x00]);
    // a 3-bit slip just before a sync marker
    let slip_at = ((cadus / 2 * cadu) * 8 - 5) as u64;
    let noisy = noise::slip(&noisy, slip_at, 3);

    let (stats, received) = decode(&profile, &noisy);
    assert!(flipped > 500, "{flipped} bits flipped");
    assert_eq!(stats.rs_uncorrectable, 0, "{:?}", stats.issues);
    assert!(stats.rs_corrected_symbols >= flipped * 9 / 10, "{} symbols corrected", stats.rs_corrected_symbols);
    assert_eq!(stats.sync.bit_slips, 1, "{:?}", stats.sync);
    assert!(stats.sync.asm_corrupted >= 10, "{:?}", stats.sync);
    assert!(stats.sync.flywheel_blocks >= 1, "{:?}", stats.sync);
    assert_eq!(stats.authentication_failures, 0);
    assert_eq!(received.len(), packets.len(), "no packet lost");
    assert!(received == packets, "every packet bit-exact");
}

#[test]
fn beyond_correction_packets_are_lost_never_corrupted() {
    let profile = flight_profile(&KEY);
    let packets = real_packets();
    let clean = encode(&profile, &packets);
    let cadu = profile.cadu_len();
    let mut noisy = clean.clone();
    let mut rng = Rng::new(9);
    noise::flip_bits(&mut noisy, 2e-3, &mut rng);
    for i in 0..8 {
        noise::burst(&mut noisy, (30 + i * 97) * cadu + 100, 300, &mut rng);
    }
    // a slip in the middle of a CADU ruins that CADU only
    let noisy = noise::slip(&noisy, (200 * cadu * 8 + 4000) as u64, 3);
    let (stats, received) = decode(&profile, &noisy);
    assert!(stats.rs_uncorrectable >= 9, "{} uncorrectable", stats.rs_uncorrectable);
    assert!(received.len() < packets.len());
    assert!(received.len() > packets.len() / 2, "{} of {} delivered", received.len(), packets.len());
    // every delivered packet is one that was sent, in order
    let mut sent = packets.iter();
    for packet in &received {
        assert!(sent.any(|p| p == packet), "a corrupt or reordered packet was delivered");
    }
}

#[test]
fn forged_replayed_and_wrong_key_frames_are_refused_and_counted() {
    let profile = flight_profile(&KEY);
    let packets = real_packets()[..400].to_vec();
    let stream = encode(&profile, &packets);
    let cadu = profile.cadu_len();

    let (stats, received) = decode(&flight_profile(&[0x55; 32]), &stream);
    assert!(received.is_empty());
    assert_eq!(stats.authentication_failures, stats.cadus - stats.idle_frames);

    // a replay: the third CADU again at the end
    let mut replayed = stream.clone();
    replayed.extend_from_slice(&stream[2 * cadu..3 * cadu]);
    let (stats, received) = decode(&profile, &replayed);
    assert_eq!(stats.replayed_frames, 1);
    assert_eq!(received, packets);

    // a forgery: frame content changed and the CRC and RS parity made good again
    let mut forged_stream = stream.clone();
    let block = &mut forged_stream[4 * cadu + 4..5 * cadu];
    kestrel_link::randomizer::apply(block);
    block[40] ^= 0xFF;
    let frame_len = 223 * 4;
    kestrel_link::fecf::seal(&mut block[..frame_len]);
    kestrel_link::reed_solomon::ReedSolomon::new(4).encode(block);
    kestrel_link::randomizer::apply(block);
    let (stats, received) = decode(&profile, &forged_stream);
    assert_eq!(stats.authentication_failures, 1);
    assert_eq!(stats.rs_corrected_symbols, 0, "the forgery is a valid codeword");
    assert!(received.len() < packets.len());
    let mut sent = packets.iter();
    assert!(received.iter().all(|p| sent.any(|s| s == p)));
}

#[test]
fn the_ccsds_crate_decodes_our_stream_to_the_same_packets() {
    use ccsds::framing::{DefaultDerandomizer, DefaultReedSolomon, Synchronizer, decode_framed_packets, decode_frames};
    let profile = flight_profile(&KEY);
    let packets = real_packets();
    let stream = encode(&profile, &packets);
    let blocks: Vec<Vec<u8>> = Synchronizer::new(std::io::Cursor::new(stream), profile.cadu_len() - 4)
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    let frames = decode_frames(
        blocks.into_iter(),
        Some(Box::new(DefaultReedSolomon::new(4))),
        Some(Box::new(DefaultDerandomizer)),
    )
    .filter_map(Result::ok);
    // to a plain CCSDS decoder our security header is an insert zone, and the MAC and FECF a trailer
    let theirs: Vec<Vec<u8>> = decode_framed_packets(frames, 10, 16 + 2)
        .map(|p| p.packet.data)
        .filter(|p| ((u16::from(p[0]) & 7) << 8 | u16::from(p[1])) != 0x7FF)
        .collect();
    let mut ours_by_channel = packets.clone();
    // the ccsds crate hands packets on per virtual channel as frames arrive, as we do
    let (_, ours) = decode(&profile, &encode(&profile, &packets));
    ours_by_channel.sort();
    let mut theirs_sorted = theirs.clone();
    theirs_sorted.sort();
    assert_eq!(theirs_sorted.len(), packets.len());
    assert!(theirs_sorted == ours_by_channel);
    assert!(theirs == ours, "same packets in the same order");
}
