//! `flight model-check`: the real binary loads the PyPI ONNX Runtime library and runs a model,
//! and `--log-format json` makes its logs machine-readable.

use kestrel_e2e::{Scratch, binary, stderr, stdout};
use kestrel_flight::onnx_runtime::cached_runtime_dir;

#[test]
fn model_check_runs_a_model_and_logs_json() {
    let scratch = Scratch::new();
    scratch.mission_with("", "");
    let output = std::process::Command::new(binary("flight"))
        .args(["--log-format", "json", "model-check", "--mission", "mission.toml", "--model"])
        .arg(cached_runtime_dir().join("models/sigmoid.onnx"))
        .current_dir(scratch.path())
        .output()
        .expect("flight runs");
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
        let output = std::process::Command::new(binary("flight"))
            .args(["model-check", "--mission", "mission.toml", "--model"])
            .arg(model)
            .current_dir(scratch.path())
            .output()
            .expect("flight runs");
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
