//! `thermal plan` and `thermal check`, the real binary, on the reference mission.

use kestrel_e2e::{Scratch, run, stderr, stdout};

#[test]
fn plan_prints_passes_eclipses_and_extremes_and_writes_a_plot() {
    let scratch = Scratch::new();
    scratch.mission_with("", "");
    let output =
        run("thermal", &["plan", "--mission", "mission.toml", "--orbits", "2", "--plot", "plan.svg"], scratch.path());
    assert!(output.status.success(), "{}", stderr(&output));
    let report = stdout(&output);
    for needle in ["passes (", "eclipses (", "payload", "battery state of charge", "energy: in"] {
        assert!(report.contains(needle), "no `{needle}` in:\n{report}");
    }
    let svg = std::fs::read_to_string(scratch.path().join("plan.svg")).expect("plot written");
    assert!(svg.starts_with("<svg") && svg.contains("temperatures"), "not an SVG plot");

    let output = run(
        "thermal",
        &["plan", "--mission", "mission.toml", "--orbits", "1", "--gpu", "idle", "--json"],
        scratch.path(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let json: serde_json::Value = serde_json::from_str(&stdout(&output)).expect("JSON");
    assert_eq!(json["within_limits"], true);
    assert!(json["energy_balance_error"].as_f64().is_some_and(|e| e < 1e-3));
}

#[test]
fn a_bad_tle_is_refused_with_file_line_column_and_key() {
    let scratch = Scratch::new();
    scratch.mission_with("0  9992\"", "0  9995\"");
    let line = scratch.line_of("0  9995\"");
    let output = run("thermal", &["check", "--mission", "mission.toml"], scratch.path());
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains(&format!("mission.toml:{}:", line - 1)), "{message}");
    assert!(message.contains("key `thermal.tle`: bad TLE: line 1 checksum is 5"), "{message}");
    let output = run("thermal", &["plan", "--mission", "mission.toml", "--orbits", "-1"], scratch.path());
    assert!(!output.status.success());
}
