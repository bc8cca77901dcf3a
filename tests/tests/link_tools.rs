//! `flight-tools frame` and `ground decode`, the real binaries, on real captures and real packets.

use std::path::PathBuf;

use kestrel_e2e::{Scratch, run, stderr, stdout, workspace_root};
use md5::{Digest, Md5};

fn testdata(path: &str) -> PathBuf {
    workspace_root().join("testdata").join(path)
}

fn decode_json(args: &[&str], dir: &std::path::Path) -> serde_json::Value {
    let output = run("ground", args, dir);
    assert!(output.status.success(), "ground decode failed: {}", stderr(&output));
    serde_json::from_str(&stdout(&output)).expect("JSON report")
}

#[test]
fn ground_decode_matches_the_independent_decoder_on_snpp() {
    let scratch = Scratch::new();
    let input = testdata("cadu/snpp_synchronized_cadus.dat");
    let report = decode_json(
        &["decode", "--in", input.to_str().expect("utf-8"), "--packets", "snpp.pkts", "--json"],
        scratch.path(),
    );
    // dldecode: 65 CADUs, 0 RS corrections, 65 frames on VCID 16 with 1 missing, 12 packets
    assert_eq!(report["cadus"], 65);
    assert_eq!(report["rs_corrected_symbols"], 0);
    assert_eq!(report["rs_uncorrectable"], 0);
    assert_eq!(report["virtual_channels"]["16"]["frames"], 65);
    assert_eq!(report["virtual_channels"]["16"]["missing"], 1);
    assert_eq!(report["packets"]["802"], 1);
    assert_eq!(report["packets"]["803"], 11);
    // and the packet bytes are dldecode's, by its published checksum
    let packets = std::fs::read(scratch.path().join("snpp.pkts")).expect("packets written");
    assert_eq!(packets.len(), 53098);
    assert_eq!(format!("{:x}", Md5::digest(&packets)), "5e11051d86c46ddc3500904c99bbe978");
}

#[test]
fn ground_decode_decodes_the_npp_noaa20_and_aqua_captures() {
    let scratch = Scratch::new();
    for name in ["npp.20241206T173815.dat", "noaa20.20241206T162710.dat", "aqua.20241206T175646.dat"] {
        let input = testdata(&format!("cadu/{name}"));
        let report = decode_json(&["decode", "--in", input.to_str().expect("utf-8"), "--json"], scratch.path());
        assert_eq!(report["cadus"], 1023, "{name}");
        assert_eq!(report["rs_uncorrectable"], 0, "{name}");
        let packets: u64 =
            report["packets"].as_object().expect("map").values().map(|v| v.as_u64().expect("count")).sum();
        assert!(packets > 250, "{name}: {packets} packets");
    }
}

#[test]
fn ground_decode_detect_names_each_real_captures_spacecraft() {
    let scratch = Scratch::new();
    for (name, spacecraft) in [
        ("npp.20241206T173815.dat", "suomi-npp"),
        ("snpp_synchronized_cadus.dat", "suomi-npp"),
        ("noaa20.20241206T162710.dat", "noaa-20"),
        ("aqua.20241206T175646.dat", "aqua"),
    ] {
        let input = testdata(&format!("cadu/{name}"));
        let fits =
            decode_json(&["decode", "--detect", "--in", input.to_str().expect("utf-8"), "--json"], scratch.path());
        let fitting: Vec<&str> = fits
            .as_array()
            .expect("fits")
            .iter()
            .filter(|f| f["fits"] == true)
            .filter_map(|f| f["spacecraft"].as_str())
            .collect();
        assert_eq!(fitting, [spacecraft], "{name}: {fits}");
    }
    std::fs::write(
        scratch.path().join("random.bin"),
        (0..500_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect::<Vec<_>>(),
    )
    .expect("write");
    let output = run("ground", &["decode", "--detect", "--in", "random.bin"], scratch.path());
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output).lines().next(),
        Some("no CADU stream found: no sync marker repeats at any known CADU length")
    );
}

#[test]
fn ground_decode_with_a_users_profile_file_or_a_known_spacecraft_gives_the_same_packets() {
    let scratch = Scratch::new();
    let input = testdata("cadu/noaa20.20241206T162710.dat");
    let input = input.to_str().expect("utf-8");
    let profile = "[link]\nspacecraft_id = 159\nrs_interleave = 4\nframe_error_control = false\n";
    std::fs::write(scratch.path().join("noaa20.toml"), profile).expect("write");
    let by_file = decode_json(&["decode", "--profile", "noaa20.toml", "--in", input, "--json"], scratch.path());
    let by_name = decode_json(&["decode", "--spacecraft", "NOAA-20", "--in", input, "--json"], scratch.path());
    assert_eq!(by_file["packets"], by_name["packets"]);
    assert_eq!(by_file["other_spacecraft"], 0);
    assert!(by_file["packets"].as_object().is_some_and(|m| !m.is_empty()));
    // another spacecraft's profile: its frames are counted as another spacecraft's, not decoded
    let wrong = decode_json(&["decode", "--spacecraft", "suomi-npp", "--in", input, "--json"], scratch.path());
    assert!(wrong["other_spacecraft"].as_u64().is_some_and(|n| n > 1000), "{wrong}");

    // a profile with a wrong key or an impossible layout is refused, naming the key and line
    std::fs::write(scratch.path().join("bad.toml"), format!("{profile}insert_zone_len = 900\n")).expect("write");
    let output = run("ground", &["decode", "--profile", "bad.toml", "--in", input], scratch.path());
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("bad.toml") && message.contains("link.insert_zone_len"), "{message}");
    std::fs::write(scratch.path().join("typo.toml"), format!("{profile}randomiser = \"off\"\n")).expect("write");
    let output = run("ground", &["decode", "--profile", "typo.toml", "--in", input], scratch.path());
    assert!(!output.status.success());
    assert!(stderr(&output).contains("randomiser"), "{}", stderr(&output));
    let output = run("ground", &["decode", "--spacecraft", "voyager-1", "--in", input], scratch.path());
    assert!(!output.status.success());
    assert!(stderr(&output).contains("no known spacecraft `voyager-1`"), "{}", stderr(&output));
}

#[test]
fn flight_frame_then_ground_decode_returns_the_real_packets_bit_exact() {
    let mut all = Vec::new();
    for name in ["CYGNSS_F7_L0_2022_086_10_15_V01_F__first101pkts.tlm", "ecm_raw2.bin"] {
        all.extend(std::fs::read(testdata(&format!("packets/{name}"))).expect("packets"));
    }
    // the reference mission's channel, and one flying an insert zone, an OCF and a shortened code
    let other_layout = "frame_error_control = true\ninsert_zone_len = 8\noperational_control_field = true\nvirtual_fill = 23\nrandomizer = \"frame-data\"";
    for (from, to, cadu_len) in [("", "", 1024), ("frame_error_control = true", other_layout, 1024 - 92)] {
        let scratch = Scratch::new();
        scratch.mission_with(from, to);
        std::fs::write(scratch.path().join("in.pkts"), &all).expect("write");
        let output = run(
            "flight-tools",
            &["frame", "--mission", "mission.toml", "--in", "in.pkts", "--out", "stream.cadu"],
            scratch.path(),
        );
        assert!(output.status.success(), "{}", stderr(&output));
        assert!(stdout(&output).starts_with("1131 packets"), "{}", stdout(&output));
        let stream = std::fs::metadata(scratch.path().join("stream.cadu")).expect("stream").len();
        assert_eq!(stream % cadu_len, 0, "{to}");

        let report = decode_json(
            &["decode", "--mission", "mission.toml", "--in", "stream.cadu", "--packets", "out.pkts", "--json"],
            scratch.path(),
        );
        assert_eq!(report["authentication_failures"], 0);
        assert_eq!(report["cadus"], stream / cadu_len, "{to}");
        // CYGNSS and ECM packets share no APID, so each APID's packets keep their order; compare
        // per APID since the two files interleave differently across virtual channels
        let back = std::fs::read(scratch.path().join("out.pkts")).expect("packets");
        assert_eq!(back.len(), all.len());
        assert_eq!(split_by_apid(&back), split_by_apid(&all));
    }
}

fn split_by_apid(stream: &[u8]) -> std::collections::BTreeMap<u16, Vec<Vec<u8>>> {
    let mut by_apid = std::collections::BTreeMap::<u16, Vec<Vec<u8>>>::new();
    let mut rest = stream;
    while rest.len() >= 6 {
        let apid = (u16::from(rest[0]) & 7) << 8 | u16::from(rest[1]);
        let len = usize::from(u16::from_be_bytes([rest[4], rest[5]])) + 7;
        by_apid.entry(apid).or_default().push(rest[..len].to_vec());
        rest = &rest[len..];
    }
    by_apid
}

#[test]
fn bad_input_gets_counted_errors_or_clear_messages_never_a_panic() {
    let scratch = Scratch::new();
    scratch.mission_with("", "");

    // garbage: decodes to nothing, says so
    let garbage: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(scratch.path().join("garbage.bin"), &garbage).expect("write");
    let report = decode_json(&["decode", "--in", "garbage.bin", "--json"], scratch.path());
    assert_eq!(report["cadus"], 0);
    assert_eq!(report["sync"]["bytes_searched_over"].as_u64().map(|b| b > 299_000), Some(true));

    // a stream cut mid-CADU: the whole CADUs decode, the rest is not delivered
    let snpp = std::fs::read(testdata("cadu/snpp_synchronized_cadus.dat")).expect("read");
    std::fs::write(scratch.path().join("cut.cadu"), &snpp[..10 * 1024 + 500]).expect("write");
    let report = decode_json(&["decode", "--in", "cut.cadu", "--json"], scratch.path());
    assert_eq!(report["cadus"], 10);

    // the wrong key: every frame refused and counted
    std::fs::write(scratch.path().join("in.pkts"), std::fs::read(testdata("packets/ecm_raw2.bin")).expect("read"))
        .expect("w");
    let output = run(
        "flight-tools",
        &["frame", "--mission", "mission.toml", "--in", "in.pkts", "--out", "s.cadu"],
        scratch.path(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    std::fs::write(scratch.path().join("keys/link.key"), "11".repeat(32)).expect("rekey");
    let report = decode_json(&["decode", "--mission", "mission.toml", "--in", "s.cadu", "--json"], scratch.path());
    assert!(report["authentication_failures"].as_u64().is_some_and(|n| n > 100), "{report}");
    assert_eq!(report["packets"].as_object().map(|m| m.len()), Some(0));

    // a malformed key file is refused with the key's position
    std::fs::write(scratch.path().join("keys/link.key"), "not a key").expect("w");
    let output = run("ground", &["decode", "--mission", "mission.toml", "--in", "s.cadu"], scratch.path());
    assert!(!output.status.success());
    assert!(stderr(&output).contains("key `link.security.key_file`: key file"), "{}", stderr(&output));

    // a truncated packet file: refused with the byte offset of the bad packet
    let mut cut = std::fs::read(testdata("packets/ecm_raw2.bin")).expect("read");
    cut.truncate(1000);
    std::fs::write(scratch.path().join("cut.pkts"), &cut).expect("write");
    std::fs::write(scratch.path().join("keys/link.key"), "00".repeat(32)).expect("w");
    let output = run(
        "flight-tools",
        &["frame", "--mission", "mission.toml", "--in", "cut.pkts", "--out", "c.cadu"],
        scratch.path(),
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("cut.pkts` byte ") && message.contains("truncated packet"), "{message}");

    // a missing input names the file
    let output = run("ground", &["decode", "--in", "nowhere.cadu"], scratch.path());
    assert!(!output.status.success());
    assert!(stderr(&output).contains("cannot read `nowhere.cadu`"), "{}", stderr(&output));
}

#[test]
fn real_packets_through_flight_frame_a_noisy_channel_and_ground_decode_come_back_bit_exact() {
    use kestrel_link::noise::{self, Rng};
    let scratch = Scratch::new();
    scratch.mission_with("", "");
    let mut sent = Vec::new();
    for name in [
        "J01_G011_LZ_2021-04-09T00-00-00Z_V01.DAT1",
        "CYGNSS_F7_L0_2022_086_10_15_V01_F__first101pkts.tlm",
        "ecm_raw2.bin",
    ] {
        sent.extend(std::fs::read(testdata(&format!("packets/{name}"))).expect("packets"));
    }
    std::fs::write(scratch.path().join("in.pkts"), &sent).expect("write");
    let output = run(
        "flight-tools",
        &["frame", "--mission", "mission.toml", "--in", "in.pkts", "--out", "clean.cadu"],
        scratch.path(),
    );
    assert!(output.status.success(), "{}", stderr(&output));

    // the channel: bit errors at 1e-4, error bursts, a few sync markers with 4 to 6 wrong bits,
    // and a 3-bit slip between two CADUs
    let mut stream = std::fs::read(scratch.path().join("clean.cadu")).expect("stream");
    let cadu = 1024;
    let cadus = stream.len() / cadu;
    let mut rng = Rng::new(77);
    let flipped = noise::flip_bits(&mut stream, 1e-4, &mut rng);
    for i in 0..10 {
        noise::burst(&mut stream, (i * cadus / 10) * cadu + 200, 40, &mut rng);
        let asm = (3 + i * cadus / 10) * cadu;
        stream[asm] ^= 0b1011_0000;
        stream[asm + 3] ^= 0b0000_0011;
    }
    let stream = noise::slip(&stream, ((cadus / 2 * cadu) * 8 - 6) as u64, 3);
    std::fs::write(scratch.path().join("noisy.cadu"), &stream).expect("write");

    let report = decode_json(
        &["decode", "--mission", "mission.toml", "--in", "noisy.cadu", "--packets", "out.pkts", "--json"],
        scratch.path(),
    );
    assert!(flipped > 500);
    assert_eq!(report["rs_uncorrectable"], 0, "{report:#}");
    assert!(report["rs_corrected_symbols"].as_u64().is_some_and(|n| n >= flipped), "{report:#}");
    assert_eq!(report["sync"]["bit_slips"], 1, "{report:#}");
    assert!(report["sync"]["asm_corrupted"].as_u64().is_some_and(|n| n >= 10), "{report:#}");
    let received = std::fs::read(scratch.path().join("out.pkts")).expect("packets");
    assert_eq!(split_by_apid(&received), split_by_apid(&sent), "every packet back, bit-exact");
}
