//! `flight-tools model-check`: the real binary loads the PyPI ONNX Runtime library and runs a model,
//! and `--log-format json` makes its logs machine-readable.

use kestrel_e2e::{Scratch, binary, stderr, stdout};
use kestrel_flight::onnx_runtime::cached_runtime_dir;

#[test]
fn model_check_runs_a_model_and_logs_json() {
    let scratch = Scratch::new();
    scratch.mission_with("", "");
    let output = std::process::Command::new(binary("flight-tools"))
        .args(["--log-format", "json", "model-check", "--mission", "mission.toml", "--model"])
        .arg(cached_runtime_dir().join("models/sigmoid.onnx"))
        .current_dir(scratch.path())
        .output()
        .expect("flight-tools runs");
    assert!(output.status.success(), "{}", stderr(&output));
    let report = stdout(&output);
    assert!(report.contains("execution provider: "), "{report}");
    assert!(report.contains("output y [3, 4, 5]"), "{report}");
    let logs = stderr(&output);
    assert!(logs.contains("ONNX Runtime loaded"), "{logs}");
    for line in logs.lines() {
        assert!(line.starts_with('{') && line.ends_with('}'), "not a JSON line: {line}");
        assert!(line.contains("\"level\":"), "{line}");
    }
}

#[test]
fn model_check_says_which_detector_layout_flight_reads_in_a_model() {
    let scratch = Scratch::new();
    scratch.mission_with("", "");
    let check = |model: std::path::PathBuf| {
        let output = std::process::Command::new(binary("flight-tools"))
            .args(["model-check", "--mission", "mission.toml", "--model"])
            .arg(model)
            .current_dir(scratch.path())
            .output()
            .expect("flight-tools runs");
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    let report = check(scratch.path().join("models/vessels-s2.onnx"));
    assert!(
        report.contains("detector output: [batch, 4 + classes, candidates]") && report.contains("with 1 classes"),
        "{report}"
    );
    // a cloud mask runs, and is said to be no detector
    let report = check(scratch.path().join("models/clouds-s2.onnx"));
    assert!(report.contains("not a detector output flight reads: [1, 1, 16, 16]"), "{report}");
}

#[test]
fn detect_writes_every_detection_as_geojson_placed_or_not() {
    let scratch = Scratch::new();
    scratch.mission_with("", "");
    let aerial = kestrel_e2e::workspace_root().join("testdata/aerial");
    let output = std::process::Command::new(binary("flight-tools"))
        .args(["detect", "--mission", "mission.toml", "--model", "trees-neon", "--geojson", "out.geojson"])
        .arg(aerial.join("OSBS_029.tif"))
        .arg(aerial.join("2019_YELL_2_541000_4977000_image_crop.png"))
        .current_dir(scratch.path())
        .output()
        .expect("flight-tools runs");
    assert!(output.status.success(), "{}", stderr(&output));
    let printed: usize = stdout(&output)
        .lines()
        .filter_map(|l| l.strip_suffix(" detections")?.rsplit(": ").next()?.parse::<usize>().ok())
        .sum();
    let text = std::fs::read_to_string(scratch.path().join("out.geojson")).expect("GeoJSON written");
    let collection: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let features = collection["features"].as_array().expect("features");
    assert!(printed > 10 && features.len() == printed, "{printed} printed, {} features", features.len());
    let geometry = |frame: &str| {
        features
            .iter()
            .filter(|f| f["properties"]["frame"].as_str().is_some_and(|n| n.contains(frame)))
            .map(|f| f["geometry"]["type"].as_str().unwrap_or("none"))
            .collect::<std::collections::BTreeSet<_>>()
    };
    // the NEON GeoTIFF is placed on the Earth; the PNG is not, and its detections still come out
    assert_eq!(geometry("OSBS_029"), ["Point"].into());
    assert_eq!(geometry("YELL"), ["none"].into());
    assert!(features.iter().all(|f| f["properties"]["pixel_box"].as_array().is_some_and(|b| b.len() == 4)));
}
