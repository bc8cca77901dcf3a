//! `flight check`, `ground check` and friends on the reference mission and on broken copies of it:
//! each mistake is one clear error with file:line:column and the key, and a non-zero exit.

use kestrel_e2e::{Scratch, run, stderr, stdout};

/// Runs `binary check` on the scratch mission and returns its error message (it must fail).
fn check_fails(binary: &str, scratch: &Scratch) -> String {
    let output = run(binary, &["check", "--mission", "mission.toml"], scratch.path());
    let message = stderr(&output);
    assert!(!output.status.success(), "{binary} check accepted a broken mission: {}", stdout(&output));
    assert_eq!(message.lines().count(), 1, "one error line expected, got: {message}");
    assert!(message.starts_with(&format!("{binary}: error: mission.toml:")), "{message}");
    message
}

#[test]
fn the_reference_mission_passes_every_check() {
    let scratch = Scratch::new();
    scratch.mission_with("", "");
    for binary in ["flight", "ground", "thermal", "radiation-sim"] {
        let output = run(binary, &["check", "--mission", "mission.toml"], scratch.path());
        assert!(output.status.success(), "{binary}: {}", stderr(&output));
        assert!(stdout(&output).contains("OK"), "{binary}: {}", stdout(&output));
    }
}

#[test]
fn a_wrong_type_names_the_key_and_its_position() {
    let scratch = Scratch::new();
    scratch.mission_with("spacecraft_id = 42", "spacecraft_id = \"forty-two\"");
    let line = scratch.line_of("forty-two");
    for binary in ["flight", "ground"] {
        let message = check_fails(binary, &scratch);
        assert!(message.contains(&format!("mission.toml:{line}:17: key `link.spacecraft_id`")), "{message}");
        assert!(message.contains("invalid type"), "{message}");
    }
}

#[test]
fn an_unknown_key_is_refused() {
    let scratch = Scratch::new();
    scratch.mission_with("intra_threads = 2", "intra_thread = 2");
    let line = scratch.line_of("intra_thread =");
    let message = check_fails("flight", &scratch);
    assert!(message.contains(&format!("mission.toml:{line}:1: key `flight.inference.intra_thread`")), "{message}");
    assert!(message.contains("unknown field `intra_thread`"), "{message}");
}

#[test]
fn an_unknown_section_is_refused_by_every_binary() {
    let scratch = Scratch::new();
    scratch.mission_with("[ground]\n", "[grund]\n");
    let line = scratch.line_of("[grund]");
    for binary in ["flight", "ground", "thermal", "radiation-sim"] {
        let message = check_fails(binary, &scratch);
        assert!(message.contains(&format!("mission.toml:{line}:2: key `grund`")), "{binary}: {message}");
        assert!(message.contains("unknown field `grund`"), "{binary}: {message}");
    }
}

#[test]
fn a_missing_section_is_named() {
    let scratch = Scratch::new();
    scratch.mission_with("[flight.inference]", "[flight_inference_moved]");
    let message = check_fails("flight", &scratch);
    assert!(message.contains("unknown field `flight_inference_moved`"), "{message}");

    scratch.mission_with("[link]\n", "[link_]\n");
    let message = check_fails("ground", &scratch);
    assert!(message.contains("unknown field `link_`"), "{message}");

    let scratch = Scratch::new();
    let without_ground = scratch.reference.split("\n[ground]\n").next().expect("head").to_owned()
        + "\n[thermal]\n"
        + scratch.reference.split("\n[thermal]\n").nth(1).expect("tail");
    std::fs::write(scratch.path().join("mission.toml"), without_ground).expect("write");
    let message = check_fails("ground", &scratch);
    assert!(message.contains("missing field `ground`"), "{message}");
    let output = run("flight", &["check", "--mission", "mission.toml"], scratch.path());
    assert!(output.status.success(), "flight needs no [ground]: {}", stderr(&output));
}

#[test]
fn bad_toml_points_at_the_line() {
    let scratch = Scratch::new();
    scratch.mission_with("rs_interleave = 4", "rs_interleave = = 4");
    let line = scratch.line_of("rs_interleave = = 4");
    for binary in ["flight", "ground", "thermal"] {
        let message = check_fails(binary, &scratch);
        assert!(message.contains(&format!("mission.toml:{line}:")), "{binary}: {message}");
    }
}

#[test]
fn an_out_of_range_value_is_named() {
    let scratch = Scratch::new();
    scratch.mission_with("rs_interleave = 4", "rs_interleave = 9");
    let line = scratch.line_of("rs_interleave = 9");
    let message = check_fails("flight", &scratch);
    assert!(
        message.contains(&format!("mission.toml:{line}:17: key `link.rs_interleave`: must be 1 to 8")),
        "{message}"
    );

    scratch.mission_with("margin_c = 1.0", "margin_c = -1.0");
    let line = scratch.line_of("margin_c = -1.0");
    let message = check_fails("flight", &scratch);
    assert!(
        message.contains(&format!(
            "mission.toml:{line}:12: key `flight.schedule.margin_c`: must be within 0 to 50, found -1"
        )),
        "{message}"
    );
    for batch in ["0", "65"] {
        scratch.mission_with("max_batch = 4", &format!("max_batch = {batch}"));
        let line = scratch.line_of(&format!("max_batch = {batch}"));
        let message = check_fails("flight", &scratch);
        assert!(
            message.contains(&format!(
                "mission.toml:{line}:13: key `flight.inference.max_batch`: must be within 1 to 64 tiles, found {batch}"
            )),
            "{message}"
        );
    }
    scratch.mission_with("late_tiles = \"detect\"", "late_tiles = \"never\"");
    let message = check_fails("flight", &scratch);
    assert!(message.contains("key `flight.schedule.late_tiles`"), "{message}");

    scratch.mission_with("latitude_deg = 68.3195", "latitude_deg = 168.3195");
    let line = scratch.line_of("168.3195");
    let message = check_fails("thermal", &scratch);
    assert!(
        message.contains(&format!("mission.toml:{line}:16: key `thermal.ground_stations[1].latitude_deg`")),
        "{message}"
    );
}

#[test]
fn a_key_file_that_does_not_exist_is_named() {
    let scratch = Scratch::new();
    scratch.mission_with("keys/link.key", "keys/lost.key");
    let line = scratch.line_of("keys/lost.key");
    for binary in ["flight", "ground"] {
        let message = check_fails(binary, &scratch);
        assert!(message.contains(&format!("mission.toml:{line}:12: key `link.security.key_file`")), "{message}");
        assert!(message.contains("lost.key"), "{message}");
    }
    scratch.mission_with("keys/operators.toml", "keys/nobody.toml");
    let message = check_fails("ground", &scratch);
    assert!(message.contains("key `ground.operators_file`"), "{message}");
}

#[test]
fn the_station_declarations_are_checked() {
    let scratch = Scratch::new();
    let station = "[[ground.stations]]\nname = \"kestrel-bench\"\nkey_file = \"keys/station-kestrel-bench.key\"\n";
    assert!(scratch.reference.contains(station), "the reference mission declares its station");
    scratch.mission_with(station, &format!("{station}\n{station}"));
    let message = check_fails("ground", &scratch);
    assert!(message.contains("key `ground.stations[1].name`: station `kestrel-bench` is declared twice"), "{message}");
    scratch.mission_with("name = \"kestrel-bench\"", "name = \"kestrel bench\"");
    let message = check_fails("ground", &scratch);
    assert!(message.contains("key `ground.stations[0].name`"), "{message}");
    scratch.mission_with(station, "");
    let message = check_fails("ground", &scratch);
    assert!(message.contains("key `ground`: missing field `stations`"), "{message}");
    scratch
        .mission_with("station_key_file = \"keys/station-kestrel-bench.key\"", "station_key_file = \"keys/gone.key\"");
    let message = check_fails("flight", &scratch);
    assert!(message.contains("key `flight.downlink.station_key_file`"), "{message}");
}

#[test]
fn a_mission_file_that_does_not_exist_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run("flight", &["check", "--mission", "nowhere.toml"], dir.path());
    assert!(!output.status.success());
    assert!(
        stderr(&output).starts_with("flight: error: nowhere.toml: cannot read the mission file"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_detector_section_is_checked() {
    let scratch = Scratch::new();
    scratch.mission_with("manifest = \"models/models.toml\"", "manifest = \"models/missing.toml\"");
    let message = check_fails("flight", &scratch);
    assert!(message.contains("key `flight.detector.manifest`") && message.contains("missing.toml"), "{message}");

    scratch.mission_with("scale_quantiles = [0.02, 0.98]", "scale_quantiles = [0.98, 0.02]");
    let line = scratch.line_of("scale_quantiles = [0.98");
    let message = check_fails("flight", &scratch);
    assert!(message.contains(&format!("mission.toml:{line}:19: key `flight.detector.scale_quantiles`")), "{message}");
}

#[test]
fn the_missions_model_must_be_in_the_manifest_signed_and_load() {
    let scratch = Scratch::new();
    scratch.mission_with("model = \"vessels-s2\"", "model = \"nowhere\"");
    let message = check_fails("flight", &scratch);
    assert!(
        message.contains("key `flight.detector.model`") && message.contains("no model named `nowhere`"),
        "{message}"
    );
    scratch.mission_with("", "");
    let manifest = scratch.path().join("models/models.toml");
    let text = std::fs::read_to_string(&manifest).expect("manifest");
    let unsigned: String = text.lines().filter(|l| !l.starts_with("sha256")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&manifest, unsigned).expect("write");
    // errors in the manifest name the manifest's own line and key
    let manifest_error = || {
        let output = run("flight", &["check", "--mission", "mission.toml"], scratch.path());
        assert!(!output.status.success(), "flight check accepted it: {}", stdout(&output));
        stderr(&output)
    };
    let message = manifest_error();
    assert!(message.starts_with("flight: error: models/models.toml:7:8: key `models[0].sha256`"), "{message}");
    assert!(message.contains("is not signed"), "{message}");
    std::fs::write(&manifest, &text).expect("restore");
    std::fs::write(scratch.path().join("models/vessels-s2.onnx"), b"not a model").expect("damage");
    let message = manifest_error();
    assert!(message.contains("vessels-s2") && message.contains("SHA-256"), "{message}");
}

#[test]
fn the_cloud_screen_section_is_checked() {
    let scratch = Scratch::new();
    scratch.mission_with("max_cloud_fraction = 0.7", "max_cloud_fraction = 70");
    let line = scratch.line_of("max_cloud_fraction = 70");
    let message = check_fails("flight", &scratch);
    assert!(
        message.contains(&format!("mission.toml:{line}:22: key `flight.cloud_screen.max_cloud_fraction`")),
        "{message}"
    );
    assert!(message.contains("must be a fraction within 0 to 1, found 70"), "{message}");

    scratch.mission_with("reflectance_scale = 10000.0", "reflectance_scale = 0.0");
    let line = scratch.line_of("reflectance_scale = 0.0");
    let message = check_fails("flight", &scratch);
    assert!(
        message.contains(&format!("mission.toml:{line}:21: key `flight.cloud_screen.reflectance_scale`")),
        "{message}"
    );

    scratch.mission_with("reflectance_offset = 0.0", "reflectance_offset = nan");
    let line = scratch.line_of("reflectance_offset = nan");
    let message = check_fails("flight", &scratch);
    assert!(
        message.contains(&format!("mission.toml:{line}:22: key `flight.cloud_screen.reflectance_offset`")),
        "{message}"
    );
}

#[test]
fn every_check_refuses_a_tle_with_a_bad_checksum_or_an_epoch_far_from_the_missions() {
    let scratch = Scratch::new();
    scratch.mission_with("0  9992\"", "0  9993\"");
    let line = scratch.line_of("tle = [");
    for binary in ["flight", "ground", "thermal"] {
        let message = check_fails(binary, &scratch);
        assert!(message.contains(&format!("mission.toml:{line}:7: key `thermal.tle`")), "{binary}: {message}");
        assert!(message.contains("checksum"), "{binary}: {message}");
    }
    scratch.mission_with("epoch = \"2026-03-20T00:00:00Z\"", "epoch = \"1996-03-20T00:00:00Z\"");
    let line = scratch.line_of("tle = [");
    for binary in ["flight", "ground", "thermal"] {
        let message = check_fails(binary, &scratch);
        assert!(message.contains(&format!("mission.toml:{line}:7: key `thermal.tle`")), "{binary}: {message}");
        assert!(message.contains("2026-03-20T00:00:00Z") && message.contains("1996-03-20T00:00:00Z"), "{message}");
    }
}

#[test]
fn a_duplicate_key_is_named() {
    let scratch = Scratch::new();
    scratch.mission_with("intra_threads = 2", "intra_threads = 2\nintra_threads = 3");
    let line = scratch.line_of("intra_threads = 3");
    for binary in ["flight", "ground", "thermal"] {
        let message = check_fails(binary, &scratch);
        assert!(
            message.contains(&format!("mission.toml:{line}:1: key `flight.inference.intra_threads`: duplicate key")),
            "{binary}: {message}"
        );
    }
}
