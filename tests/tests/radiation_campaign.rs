//! `radiation-sim campaign`, the real binary, driving the real `flight` and `ground`: the small
//! plan of the suite (kills, a hang past the watchdog, power cycles, checkpoint bit flips and
//! truncation, a short BER sweep, a burst, dropped and duplicated bytes, a bit slip, a hot
//! payload, a dead battery cell) ends with every invariant held; upsets aimed at the image are
//! caught by flight's check, and fail the campaign without it, as are upsets aimed at the model's
//! weights; upsets aimed at flight's state in memory
//! stop it before a commit and it recovers from disk; bad plans are refused with the line
//! and key.

use std::path::Path;
use std::process::Output;

use kestrel_e2e::{Scratch, binary, stderr, stdout, workspace_root};

/// Writes the repository's plan `name` into `dir`, with `edit` applied and its frames found.
fn copy_plan(dir: &Path, name: &str, edit: (&str, &str)) {
    let text = std::fs::read_to_string(workspace_root().join("radiation-sim/plans").join(name)).expect("plan");
    let text = text.replace(edit.0, edit.1);
    let text = text.replace("../../testdata", &workspace_root().join("testdata").display().to_string());
    let text = text.replace("../../var/", &workspace_root().join("var/").display().to_string());
    let text = text.replace("../../../shared/data", &kestrel_flight::reference_data::root().display().to_string());
    std::fs::write(dir.join(name), text).expect("plan");
}

/// `radiation-sim campaign` on `plan` in `dir`, with `seed`; the report goes to `dir/report.json`.
fn radiation_sim(dir: &Path, plan: &str, seed: u64) -> Output {
    std::process::Command::new(binary("radiation-sim"))
        .args(["campaign", "--mission"])
        .arg(workspace_root().join("mission.toml"))
        .args(["--plan", plan, "--seed", &seed.to_string(), "--report", "report.json"])
        .current_dir(dir)
        .output()
        .expect("radiation-sim runs")
}

/// Runs the repository's `plan` with `edit` applied; its output and report.
fn campaign(plan: &str, edit: (&str, &str), seed: u64) -> (Scratch, Output, serde_json::Value) {
    let scratch = Scratch::new();
    copy_plan(scratch.path(), plan, edit);
    let output = radiation_sim(scratch.path(), plan, seed);
    let report = std::fs::read(scratch.path().join("report.json")).expect("report");
    let json = serde_json::from_slice(&report).expect("JSON");
    (scratch, output, json)
}

#[test]
fn the_smoke_campaign_holds_every_invariant_and_classifies_every_fault() {
    let (scratch, output, json) = campaign("smoke.toml", ("", ""), 7);
    assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
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
    let table = std::fs::read_to_string(scratch.path().join("report.txt")).expect("table");
    assert!(table.contains("invariants: all held"), "{table}");
    let plot = std::fs::read_to_string(scratch.path().join("report.svg")).expect("plot");
    assert!(plot.starts_with("<svg") && plot.contains("outcomes per fault kind"), "not the plot");
    for kind in kinds {
        assert!(plot.contains(&format!(">\n{kind}\n<")), "the plot has no row for {kind}");
    }
}

#[test]
fn upsets_in_the_image_are_caught_by_the_check_and_fail_the_campaign_without_it() {
    let (_scratch, output, report) = campaign("image-upsets.toml", ("", ""), 5);
    assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
    assert_eq!(report["outcomes"]["image_seu"]["detected_corrected"], 3, "{report}");
    assert_eq!(report["invariants"]["corrupt_accepted"], 0);

    let (_scratch, output, report) = campaign("image-upsets.toml", ("check_upsets = true", "check_upsets = false"), 5);
    assert!(!output.status.success(), "a campaign with an invariant broken fails: {}", stdout(&output));
    let message = stderr(&output);
    assert!(message.contains("invariants broken: corrupt products accepted:"), "{message}");
    assert!(report["invariants"]["corrupt_accepted"].as_u64().unwrap_or(0) > 0, "{report}");
    assert_eq!(report["broken"].as_array().map(Vec::len), Some(1), "only that invariant: {report}");
}

#[test]
fn upsets_in_the_weights_are_caught_by_their_check_and_fail_the_campaign_without_it() {
    let (_scratch, output, report) = campaign("weights-upsets.toml", ("", ""), 5);
    assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
    assert_eq!(report["outcomes"]["weights_seu"]["detected_corrected"], 3, "{report}");
    let evidence: Vec<&str> =
        report["injections"].as_array().expect("injections").iter().filter_map(|i| i["evidence"].as_str()).collect();
    assert!(evidence.iter().all(|e| e.contains("weights changed in memory")), "{evidence:?}");
    assert_eq!(report["invariants"]["corrupt_accepted"], 0);

    let (_scratch, output, report) =
        campaign("weights-upsets.toml", ("check_upsets = true", "check_upsets = false"), 5);
    assert!(!output.status.success(), "a campaign with an invariant broken fails: {}", stdout(&output));
    assert!(stderr(&output).contains("corrupt products accepted:"), "{}", stderr(&output));
    assert!(report["invariants"]["corrupt_accepted"].as_u64().unwrap_or(0) > 0, "{report}");
    // a detector computing from upset weights finds other things: products of the reference may
    // be missing as well ("lost"), but nothing is duplicated and the pipeline still drains
    let broken: Vec<&str> = report["broken"].as_array().expect("broken").iter().filter_map(|b| b.as_str()).collect();
    assert!(
        broken.iter().all(|b| b.starts_with("corrupt products accepted") || b.starts_with("products lost")),
        "only corruption and what it displaced: {report}"
    );
}

#[test]
fn upsets_in_products_about_to_be_sent_are_kept_back_by_flight_or_refused_by_the_ground() {
    let (_scratch, output, report) = campaign("queue-upsets.toml", ("", ""), 3);
    assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
    let counts = report["outcomes"]["queue_seu"].as_object().expect("queue_seu outcomes");
    assert!(
        counts.get("detected_corrected").and_then(serde_json::Value::as_u64).unwrap_or(0) >= 1,
        "{report}\n{}",
        stderr(&output)
    );
    assert!(!counts.contains_key("not_injected") && !counts.contains_key("unrecovered"), "{counts:?}");

    let (_scratch, output, report) = campaign("queue-upsets.toml", ("check_upsets = true", "check_upsets = false"), 3);
    assert!(output.status.success(), "the ground's content CRC still holds: {}\n{}", stdout(&output), stderr(&output));
    assert!(report["invariants"]["ground_rejected"].as_u64().unwrap_or(0) >= 1, "{report}");
}

#[test]
fn a_bad_plan_is_refused_with_its_line_and_key() {
    let scratch = Scratch::new();
    std::fs::write(scratch.path().join("plan.toml"), "frames = []\nspeedup = 100.0\nfaults = []\n").expect("plan");
    let output = radiation_sim(scratch.path(), "plan.toml", 1);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("plan.toml: key `frames`: a campaign needs at least one frame"), "{message}");

    copy_plan(scratch.path(), "smoke.toml", ("off_s = 0.5", "off_s = -2.0"));
    let output = radiation_sim(scratch.path(), "smoke.toml", 1);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("key `faults[2].off_s`: must be zero or more seconds, not -2"), "{message}");
}

#[test]
fn upsets_in_the_flight_state_stop_flight_before_a_commit_and_it_recovers_from_disk() {
    let (_scratch, output, report) = campaign("state-upsets.toml", ("", ""), 4);
    assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
    for key in ["lost", "duplicated", "corrupt_accepted"] {
        assert_eq!(report["invariants"][key], 0, "{key}: {report}");
    }
    let counts = report["outcomes"]["state_seu"].as_object().expect("state_seu outcomes");
    assert!(!counts.contains_key("unrecovered") && !counts.contains_key("not_injected"), "{counts:?}");
    assert!(counts.get("detected_recovered").and_then(serde_json::Value::as_u64).unwrap_or(0) >= 1, "{counts:?}");
}

/// The large campaign of docs/reliability.md (1,000 memory SEUs, 200 SIGKILLs, 100 power cycles,
/// hangs, checkpoint damage, a BER sweep from 1e-6 to 1e-3, excursions), behind a flag:
/// `cargo test -p kestrel-e2e --test radiation_campaign -- --ignored`.
#[test]
#[ignore = "about 45 minutes on 2 cores: run with --ignored"]
fn the_large_campaign_holds_every_invariant() {
    let (_scratch, output, report) = campaign("large.toml", ("", ""), 1);
    assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
    for key in ["lost", "duplicated", "corrupt_accepted"] {
        assert_eq!(report["invariants"][key], 0, "{key}: {report}");
    }
    assert_eq!(
        report["outcomes"]["memory_seu"].as_object().map(|c| c.values().filter_map(|v| v.as_u64()).sum()),
        Some(1000)
    );
}

/// Single-bit upsets aimed at every stage's buffers over ten scenes hold every invariant with
/// flight's checks, and corrupt products get through without them, behind a flag as above.
#[test]
#[ignore = "about 6 minutes: run with --ignored"]
fn aimed_single_bit_upsets_are_caught_by_the_checks_and_corrupt_products_without_them() {
    let (_scratch, output, report) = campaign("aimed.toml", ("", ""), 1);
    assert!(output.status.success(), "{}\n{}", stdout(&output), stderr(&output));
    let (_scratch, output, report_off) = campaign("aimed.toml", ("check_upsets = true", "check_upsets = false"), 1);
    assert!(!output.status.success(), "{report_off}");
    assert!(report_off["invariants"]["corrupt_accepted"].as_u64().unwrap_or(0) > 0, "{report_off}\n{report}");
}
