//! `ground decode --detect` on streams framed as each known spacecraft frames them: the right
//! profile, and only it, must fit; bytes with no sync marker are no CADU stream at all.

use kestrel_ground::decode_file::{Detection, detect};
use kestrel_link::encoder::{CaduEncoder, EncoderState};
use kestrel_link::packet::SequenceCounters;
use kestrel_link::profile::LinkProfile;
use kestrel_link::spacecraft::KNOWN;

/// Two APIDs of packets of several sizes, framed with `profile` into a few hundred CADUs.
fn capture(profile: &LinkProfile) -> Vec<u8> {
    let mut counters = SequenceCounters::default();
    let mut encoder = CaduEncoder::new(profile.clone(), EncoderState::default());
    let mut stream = Vec::new();
    for i in 0..400usize {
        let data: Vec<u8> = (0..(60 + i * 37 % 1500)).map(|b| (b * 13 + i) as u8).collect();
        let mut packet = Vec::new();
        counters.segment(500 + (i % 2) as u16, &data, 4096, &mut packet);
        encoder.push_packets(16, &packet);
        encoder.emit_full_frames(&mut stream);
    }
    encoder.flush(&mut stream);
    stream
}

#[test]
fn detect_names_the_spacecraft_that_framed_the_stream_and_no_other() {
    let dir = tempfile::tempdir().expect("temp dir");
    for spacecraft in KNOWN {
        let path = dir.path().join(format!("{}.cadu", spacecraft.name));
        std::fs::write(&path, capture(&spacecraft.profile())).expect("write");
        let fits = detect(&path).expect("detect");
        let fitting: Vec<&str> = fits.iter().filter(|f| f.fits).map(|f| f.spacecraft).collect();
        assert_eq!(fitting, [spacecraft.name], "{}", Detection(&fits));
        assert!(fits[0].packets >= 400, "{}: {} packets", spacecraft.name, fits[0].packets);
        assert_eq!(fits[0].pointer_mismatches, 0);
    }
}

#[test]
fn bytes_without_a_sync_marker_are_no_cadu_stream() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("random.bin");
    let random: Vec<u8> = (0..2_000_000u64).map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8).collect();
    std::fs::write(&path, random).expect("write");
    let fits = detect(&path).expect("detect");
    assert!(fits.iter().all(|f| !f.sync_found && !f.fits));
    assert!(Detection(&fits).to_string().starts_with("no CADU stream found"));
}

#[test]
fn a_missing_capture_is_named() {
    let error = detect(std::path::Path::new("no/such/capture.dat")).expect_err("missing");
    assert!(error.to_string().contains("no/such/capture.dat"), "{error}");
}
