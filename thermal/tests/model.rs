//! The reference mission's thermal and power model over whole orbits, and the mission file's
//! thermal section refusing what is physically impossible.

use std::path::PathBuf;

use kestrel_mission::MissionError;
use kestrel_thermal::config::LoadedThermalMission;
use kestrel_thermal::plan::{GpuProfile, plan};

fn reference_text() -> String {
    std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../mission.toml")).expect("mission.toml")
}

fn load_with(from: &str, to: &str) -> Result<LoadedThermalMission, MissionError> {
    let text = reference_text();
    assert!(text.contains(from), "the reference mission has no `{from}`");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mission.toml");
    std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
    LoadedThermalMission::load(&path)
}

#[test]
fn energy_in_equals_energy_out_plus_stored_over_an_orbit() {
    let mission = load_with("", "").expect("reference mission");
    for gpu in [GpuProfile::Active, GpuProfile::Idle] {
        let plan = plan(&mission, 1.0, gpu).expect("plan");
        assert!(plan.energy_balance_error() < 1e-3, "{:?}: balance error {}", gpu, plan.energy_balance_error());
        assert!(plan.energy_in_j > 1e6, "an orbit absorbs megajoules");
    }
}

#[test]
fn the_hot_case_needs_the_scheduler_and_the_cold_case_does_not() {
    let mission = load_with("", "").expect("reference mission");
    let hot = plan(&mission, 15.0, GpuProfile::Active).expect("plan");
    let payload = &hot.nodes[0];
    assert_eq!(payload.name, "payload");
    assert!(payload.max_c > payload.limits_c.1, "continuous detection overheats the payload: {payload:?}");
    let cold = plan(&mission, 15.0, GpuProfile::Idle).expect("plan");
    assert!(cold.within_limits(), "{cold}");
    // passes and eclipses come out of the same orbit: about one eclipse per orbit
    assert!((14..=17).contains(&cold.eclipse_intervals().len()));
    assert!(cold.passes.iter().all(|p| p.duration_s() > 60.0 && p.max_elevation_deg >= 5.0));
}

#[test]
fn physically_impossible_parameters_are_refused_with_their_key() {
    let cases = [
        ("area_m2 = 0.25", "area_m2 = -0.25", "thermal.nodes[1].surface.area_m2", "must be above 0"),
        ("emissivity = 0.88", "emissivity = 1.2", "thermal.nodes[1].surface.emissivity", "within 0 to 1"),
        (
            "heat_capacity_j_k = 1500.0",
            "heat_capacity_j_k = 0.0",
            "thermal.nodes[0].heat_capacity_j_k",
            "must be above 0",
        ),
        (
            "battery_initial_soc = 0.80",
            "battery_initial_soc = 1.5",
            "thermal.power.battery_initial_soc",
            "within 0 to 1",
        ),
        (
            "between = [\"payload\", \"radiator\"]",
            "between = [\"payload\", \"radiatr\"]",
            "thermal.conductances[0].between",
            "no node is named `radiatr`",
        ),
        (
            "payload_node = \"payload\"",
            "payload_node = \"gpu\"",
            "thermal.power.payload_node",
            "no node is named `gpu`",
        ),
        ("albedo = 0.30", "albedo = -0.1", "thermal.environment.albedo", "within 0 to 1"),
    ];
    for (from, to, key, message) in cases {
        let error = load_with(from, to).expect_err(to);
        assert_eq!(error.key.as_deref(), Some(key), "{error}");
        assert!(error.message.contains(message), "{error}");
        assert!(error.position.is_some(), "{error}");
    }
}

#[test]
fn a_bad_tle_and_a_decaying_orbit_are_refused_with_the_key() {
    let error = load_with("0  9992\"", "0  9993\"").expect_err("bad checksum");
    assert_eq!(error.key.as_deref(), Some("thermal.tle"));
    assert!(error.message.contains("line 1 checksum is 3, its digits sum to 2"), "{error}");

    // 16.4 revolutions a day with heavy drag: about 180 km up, it comes down within days
    let decaying = (
        "1 40697U 15028A   26079.00000000  .50000000  00000-0  50000-1 0  9997",
        "2 40697  98.5659 156.2041 0001034  95.2796 264.8507 16.40000000560009",
    );
    let text = reference_text();
    let start = text.find("tle = [").expect("tle");
    let end = start + text[start..].find(']').expect("end of tle") + 1;
    let replaced = format!("{}tle = [\"{}\", \"{}\"]{}", &text[..start], decaying.0, decaying.1, &text[end..]);
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("mission.toml"), replaced).expect("write");
    let error = LoadedThermalMission::load(&dir.path().join("mission.toml")).expect_err("decays");
    assert_eq!(error.key.as_deref(), Some("thermal.tle"), "{error}");
    assert!(error.message.contains("the orbit decays"), "{error}");
}

#[test]
fn a_tle_whose_epoch_is_far_from_the_missions_is_refused_naming_both() {
    const EPOCH: &str = "epoch = \"2026-03-20T00:00:00Z\"";
    // the reference TLE's epoch is 2026-03-20: decades away, and a little over the limit
    for (mission_epoch, days) in
        [("1996-03-20T00:00:00Z", "10957.0 days after"), ("2026-04-20T00:00:00Z", "31.0 days before")]
    {
        let error = load_with(EPOCH, &format!("epoch = \"{mission_epoch}\"")).expect_err(mission_epoch);
        assert_eq!(error.key.as_deref(), Some("thermal.tle"), "{error}");
        assert!(error.position.is_some(), "{error}");
        assert!(
            error.message.contains("the TLE's epoch 2026-03-20T00:00:00Z")
                && error.message.contains(days)
                && error.message.contains(mission_epoch),
            "{error}"
        );
    }
    // within the limit either side
    for mission_epoch in ["2026-02-19T00:00:00Z", "2026-04-18T00:00:00Z"] {
        load_with(EPOCH, &format!("epoch = \"{mission_epoch}\"")).expect(mission_epoch);
    }
}
