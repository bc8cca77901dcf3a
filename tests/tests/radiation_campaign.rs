//! `radiation-sim campaign`, the real binary, driving the real `flight` and `ground`: the small
//! plan of the suite (kills, a hang past the watchdog, power cycles, checkpoint bit flips and
//! truncation, a short BER sweep, a burst, dropped and duplicated bytes, a bit slip, a hot
//! payload, a dead battery cell) ends with every invariant held; upsets aimed at the image are
//! caught by flight's check, and fail the campaign without it; bad plans are refused with the line
//! and key.

use kestrel_e2e::{Scratch, binary, stderr, stdout, workspace_root};

#[test]
fn the_smoke_campaign_holds_every_invariant_and_classifies_every_fault() {
    let scratch = Scratch::new();
    let report = scratch.path().join("report.json");
    let output = std::process::Command::new(binary("radiation-sim"))
        .args(["campaign", "--mission"])
        .arg(workspace_root().join("mission.toml"))
        .arg("--plan")
        .arg(workspace_root().join("radiation-sim/plans/smoke.toml"))
        .args(["--seed", "7", "--report"])
        .arg(&report)
        .output()
        .expect("radiation-sim runs");
    assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).expect("report")).expect("JSON");
    let invariants = &json["invariants"];
    assert!(invariants["products_expected"].as_u64().unwrap_or(0) > 3, "{invariants}");
    assert_eq!(invariants["products_archived"], invariants["products_expected"], "{invariants}");
    for key in ["lost", "duplicated", "corrupt_accepted"] {
        assert_eq!(invariants[key], 0, "{key}: {invariants}");
    }
    assert_eq!(invariants["drained"], true);
    // every fault was injected and ended detected-and-recovered or masked, never unrecovered
    let outcomes = json["outcomes"].as_object().expect("outcomes");
    let kinds = ["sigkill", "hang", "power_cycle", "checkpoint_bitflip", "checkpoint_truncate", "link_ber", "heat"];
    for kind in kinds.into_iter().chain(["dead_cell"]) {
        let counts = outcomes.get(kind).and_then(|c| c.as_object()).unwrap_or_else(|| panic!("no {kind}: {json}"));
        assert!(!counts.contains_key("unrecovered") && !counts.contains_key("not_injected"), "{kind}: {counts:?}");
    }
    // a one-off link fault needs downlink bytes to ride on; one that found none is not injected
    for kind in ["link_burst", "link_drop", "link_duplicate", "link_slip"] {
        let counts = outcomes.get(kind).and_then(|c| c.as_object()).unwrap_or_else(|| panic!("no {kind}: {json}"));
        assert!(!counts.contains_key("unrecovered"), "{kind}: {counts:?}");
    }
    assert_eq!(outcomes["sigkill"]["detected_recovered"], 4, "each kill restarted from the checkpoint");
    assert_eq!(outcomes["hang"]["detected_recovered"], 1, "a 5 s hang outlasts the 3 s watchdog");
    let starts = json["flight_starts"].as_u64().expect("starts");
    assert!(starts >= 1 + 4 + 1 + 2 + 2, "a start after every kill, hang, power cycle and surgery: {starts}");
    assert!(std::fs::read_to_string(report.with_extension("txt")).expect("table").contains("invariants: all held"));
}

/// Runs `plan` (the repository's, with `edit` applied) and returns radiation-sim's output.
fn campaign(plan: &str, edit: (&str, &str)) -> (std::process::Output, serde_json::Value) {
    let scratch = Scratch::new();
    let source = workspace_root().join("radiation-sim/plans").join(plan);
    let text = std::fs::read_to_string(&source).expect("plan").replace(edit.0, edit.1);
    let text = text.replace("../../testdata", &workspace_root().join("testdata").display().to_string());
    std::fs::write(scratch.path().join(plan), text).expect("plan");
    let output = std::process::Command::new(binary("radiation-sim"))
        .args(["campaign", "--mission"])
        .arg(workspace_root().join("mission.toml"))
        .args(["--plan", plan, "--seed", "5", "--report", "report.json"])
        .current_dir(scratch.path())
        .output()
        .expect("radiation-sim runs");
    let report = std::fs::read(scratch.path().join("report.json")).expect("report");
    (output, serde_json::from_slice(&report).expect("JSON"))
}

#[test]
fn upsets_in_the_image_are_caught_by_the_check_and_fail_the_campaign_without_it() {
    let (output, report) = campaign("image-upsets.toml", ("", ""));
    assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
    assert_eq!(report["outcomes"]["image_seu"]["detected_corrected"], 3, "{report}");
    assert_eq!(report["invariants"]["corrupt_accepted"], 0);

    let (output, report) = campaign("image-upsets.toml", ("check_upsets = true", "check_upsets = false"));
    assert!(!output.status.success(), "a campaign with an invariant broken fails: {}", stdout(&output));
    let message = stderr(&output);
    assert!(message.contains("invariants broken: corrupt products accepted:"), "{message}");
    assert!(report["invariants"]["corrupt_accepted"].as_u64().unwrap_or(0) > 0, "{report}");
    assert_eq!(report["broken"].as_array().map(Vec::len), Some(1), "only that invariant: {report}");
}

#[test]
fn a_bad_plan_is_refused_with_its_line_and_key() {
    let scratch = Scratch::new();
    let plan = scratch.path().join("plan.toml");
    std::fs::write(&plan, "frames = []\nspeedup = 100.0\nfaults = []\n").expect("plan");
    let output = std::process::Command::new(binary("radiation-sim"))
        .args(["campaign", "--mission"])
        .arg(workspace_root().join("mission.toml"))
        .arg("--plan")
        .arg(&plan)
        .args(["--report", "report.json"])
        .current_dir(scratch.path())
        .output()
        .expect("radiation-sim runs");
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("plan.toml: key `frames`: a campaign needs at least one frame"), "{message}");
    let mut lines = std::fs::read_to_string(workspace_root().join("radiation-sim/plans/smoke.toml")).expect("plan");
    lines = lines.replace("off_s = 0.5", "off_s = -2.0");
    std::fs::write(&plan, lines.replace("../../testdata", &workspace_root().join("testdata").display().to_string()))
        .expect("plan");
    let output = std::process::Command::new(binary("radiation-sim"))
        .args(["campaign", "--mission"])
        .arg(workspace_root().join("mission.toml"))
        .arg("--plan")
        .arg(&plan)
        .args(["--report", "report.json"])
        .current_dir(scratch.path())
        .output()
        .expect("radiation-sim runs");
    let message = stderr(&output);
    assert!(message.contains("key `faults[2].off_s`: must be zero or more seconds, not -2"), "{message}");
}
