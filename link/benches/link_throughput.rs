//! Link throughput, with the stock `ccsds` crate decoder measured side by side on the same stream.
//! `cargo bench -p kestrel-link --bench link_throughput` (set `KESTREL_BENCH_MB` for another size).
//! Figures go in docs/benchmarks.md; nothing here asserts a time.

use std::time::Instant;

use kestrel_link::decoder::CaduDecoder;
use kestrel_link::encoder::{CaduEncoder, EncoderState};
use kestrel_link::noise::{self, Rng};
use kestrel_link::packet::SequenceCounters;
use kestrel_link::profile::LinkProfile;
use kestrel_link::security::SecurityAssociation;

fn mbit_per_s(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 * 8.0 / seconds / 1e6
}

/// Product-like packets (4 KiB segments of incompressible data and small housekeeping packets).
fn packets(total: usize) -> Vec<u8> {
    let mut rng = Rng::new(1);
    let mut counters = SequenceCounters::default();
    let mut out = Vec::with_capacity(total + 70_000);
    while out.len() < total {
        let len = 200 + rng.below(60_000) as usize;
        let payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        counters.segment(0x021, &payload, 4096, &mut out);
        counters.segment(0x010, &payload[..100], 4096, &mut out);
    }
    out
}

fn ccsds_decode(stream: Vec<u8>, cadu_len: usize) -> usize {
    use ccsds::framing::{DefaultDerandomizer, DefaultReedSolomon, Synchronizer, decode_framed_packets, decode_frames};
    let blocks = Synchronizer::new(std::io::Cursor::new(stream), cadu_len - 4).into_iter().filter_map(Result::ok);
    let frames = decode_frames(blocks, Some(Box::new(DefaultReedSolomon::new(4))), Some(Box::new(DefaultDerandomizer)))
        .filter_map(Result::ok);
    decode_framed_packets(frames, 10, 18).filter(|p| p.packet.header.apid != 0x7FF).count()
}

fn main() {
    let megabytes: usize = std::env::var("KESTREL_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(128);
    let profile = LinkProfile {
        spacecraft_id: Some(42),
        frame_error_control: true,
        security: Some(SecurityAssociation::new(1, &[9; 32], false)),
        ..LinkProfile::plain_ccsds()
    };
    let source = packets(megabytes << 20);
    let mut boundaries = vec![0];
    while let Some(&start) = boundaries.last().filter(|&&s| s < source.len()) {
        boundaries.push(start + usize::from(u16::from_be_bytes([source[start + 4], source[start + 5]])) + 7);
    }
    let sent_packets = boundaries.len() - 1;

    let encode = |profile: &LinkProfile| {
        let started = Instant::now();
        let mut encoder = CaduEncoder::new(profile.clone(), EncoderState::default());
        let mut stream = Vec::with_capacity(source.len() * 1024 / 860);
        for packet in boundaries.windows(2) {
            encoder.push_packets(1, &source[packet[0]..packet[1]]);
            encoder.emit_full_frames(&mut stream);
        }
        encoder.flush(&mut stream);
        (started.elapsed().as_secs_f64(), stream)
    };
    let decode = |profile: &LinkProfile, input: &[u8]| {
        let mut decoder = CaduDecoder::new(profile.clone());
        let mut delivered = 0usize;
        let started = Instant::now();
        for chunk in input.chunks(1 << 20) {
            decoder.push(chunk, &mut |_| delivered += 1);
        }
        decoder.finish(&mut |_| delivered += 1);
        (started.elapsed().as_secs_f64(), delivered, decoder.stats())
    };

    let (encode_s, stream) = encode(&profile);
    println!(
        "stream: {} MB of packets ({sent_packets} packets) -> {} MB of CADUs",
        source.len() >> 20,
        stream.len() >> 20
    );
    println!("encode (one core):                {:>7.0} Mbit/s of CADUs", mbit_per_s(stream.len(), encode_s));

    let (clean_s, clean_packets, _) = decode(&profile, &stream);
    println!(
        "decode clean (one core):          {:>7.0} Mbit/s, {clean_packets} of {sent_packets} packets",
        mbit_per_s(stream.len(), clean_s)
    );

    let mut noisy = stream.clone();
    let flipped = noise::flip_bits(&mut noisy, 1e-4, &mut Rng::new(42));
    let (noisy_s, noisy_packets, stats) = decode(&profile, &noisy);
    println!(
        "decode BER 1e-4 (one core):       {:>7.0} Mbit/s, {noisy_packets} of {sent_packets} packets, {flipped} bit errors, {} symbols corrected, {} uncorrectable",
        mbit_per_s(stream.len(), noisy_s),
        stats.rs_corrected_symbols,
        stats.rs_uncorrectable
    );

    // a Metop-like layout beside it: a 2-byte insert zone and an operational control field
    let zoned = LinkProfile { insert_zone_len: 2, operational_control_field: true, ..profile.clone() };
    let (_, zoned_stream) = encode(&zoned);
    let (zoned_s, zoned_packets, _) = decode(&zoned, &zoned_stream);
    println!(
        "decode clean, insert zone + OCF:  {:>7.0} Mbit/s, {zoned_packets} of {sent_packets} packets",
        mbit_per_s(zoned_stream.len(), zoned_s)
    );
    let mut zoned_noisy = zoned_stream.clone();
    noise::flip_bits(&mut zoned_noisy, 1e-4, &mut Rng::new(42));
    let (zoned_noisy_s, zoned_noisy_packets, _) = decode(&zoned, &zoned_noisy);
    println!(
        "decode BER 1e-4, IZ + OCF:        {:>7.0} Mbit/s, {zoned_noisy_packets} of {sent_packets} packets",
        mbit_per_s(zoned_stream.len(), zoned_noisy_s)
    );

    let started = Instant::now();
    let theirs_clean = ccsds_decode(stream.clone(), profile.cadu_len());
    let ccsds_clean_s = started.elapsed().as_secs_f64();
    println!(
        "ccsds crate, clean:               {:>7.0} Mbit/s, {theirs_clean} of {sent_packets} packets",
        mbit_per_s(stream.len(), ccsds_clean_s)
    );
    let started = Instant::now();
    let theirs_noisy = ccsds_decode(noisy, profile.cadu_len());
    let ccsds_noisy_s = started.elapsed().as_secs_f64();
    println!(
        "ccsds crate, BER 1e-4:            {:>7.0} Mbit/s, {theirs_noisy} of {sent_packets} packets",
        mbit_per_s(stream.len(), ccsds_noisy_s)
    );
}
