//! Eclipse entries and exits and pass AOS/LOS for the reference TLE over 3 days agree with Skyfield
//! (thermal/reference/skyfield_events.json, made by skyfield_reference.py) within 2 s.

use std::path::PathBuf;

use kestrel_thermal::config::LoadedThermalMission;
use kestrel_thermal::events;
use serde_json::Value;

const TOLERANCE_S: f64 = 2.0;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(root().join("thermal/reference/skyfield_events.json")).expect("reference file");
    serde_json::from_str(&text).expect("reference JSON")
}

fn mission() -> LoadedThermalMission {
    LoadedThermalMission::load(&root().join("mission.toml")).expect("reference mission")
}

fn window(reference: &Value) -> (f64, f64) {
    let start = reference["start_unix"].as_f64().expect("start");
    (start, start + reference["days"].as_f64().expect("days") * 86_400.0)
}

#[test]
fn eclipses_agree_with_skyfield() {
    let reference = reference();
    let mission = mission();
    let tle = mission.config.thermal.tle.get_ref();
    assert_eq!(reference["tle"][0], tle[0].as_str(), "the reference was made for another TLE: rerun the script");
    let orbit = &mission.orbit;
    let (start, end) = window(&reference);
    let ours = events::eclipses(orbit, start, end).expect("eclipses");
    let theirs = reference["eclipse_transitions"].as_array().expect("array");
    assert_eq!(ours.len(), theirs.len());
    let mut worst: f64 = 0.0;
    for (o, t) in ours.iter().zip(theirs) {
        assert_eq!(o.sunlit, t["sunlit"].as_bool().expect("bool"));
        worst = worst.max((o.unix - t["unix"].as_f64().expect("time")).abs());
    }
    println!("{} eclipse transitions, worst difference {worst:.3} s", ours.len());
    assert!(worst < TOLERANCE_S, "worst eclipse difference {worst:.3} s");
}

#[test]
fn passes_agree_with_skyfield() {
    let reference = reference();
    let mission = mission();
    let orbit = &mission.orbit;
    let (start, end) = window(&reference);
    let theirs = reference["passes"].as_array().expect("array");
    let mut worst: f64 = 0.0;
    let mut compared = 0;
    for station in &mission.config.thermal.ground_stations {
        let ours = events::passes(orbit, station, start, end).expect("passes");
        let events_of = |kind: &str| -> Vec<f64> {
            theirs
                .iter()
                .filter(|e| e["station"] == station.name.as_str() && e["event"] == kind)
                .map(|e| e["unix"].as_f64().expect("time"))
                .collect()
        };
        let (aos, los) = (events_of("aos"), events_of("los"));
        // Skyfield reports a pass already in progress at the start with a LOS and no AOS
        let los: Vec<f64> = los.into_iter().filter(|&l| aos.first().is_some_and(|&a| l > a)).collect();
        assert_eq!(ours.len(), aos.len().min(los.len()), "{}", station.name);
        for (pass, (a, l)) in ours.iter().zip(aos.iter().zip(&los)) {
            worst = worst.max((pass.aos_unix - a).abs()).max((pass.los_unix - l).abs());
            compared += 2;
        }
    }
    println!("{compared} AOS/LOS compared, worst difference {worst:.3} s");
    assert!(compared > 100);
    assert!(worst < TOLERANCE_S, "worst pass difference {worst:.3} s");
}
