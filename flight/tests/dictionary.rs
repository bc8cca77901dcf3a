//! The mission dictionary's parameters against flight: each default is the mission file's value
//! at the key the dictionary names (or the dictionary's own value), read from the reference
//! mission both ways.

use std::path::PathBuf;

use kestrel_dictionary::{Default, PARAMETERS};
use kestrel_flight::config::LoadedFlightMission;

#[test]
fn every_parameters_default_is_the_mission_files_value_at_the_key_the_dictionary_names() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../mission.toml");
    let mission = LoadedFlightMission::load(&path).expect("the reference mission");
    let document = toml::Value::Table(std::fs::read_to_string(&path).expect("read").parse().expect("TOML"));
    for spec in PARAMETERS {
        let flown = mission.config.flight.parameter_default(spec.parameter);
        let expected = match spec.default {
            Default::Value(value) => value,
            Default::MissionKey(key) => {
                let mut at = &document;
                for part in key.split('.') {
                    at = at.get(part).unwrap_or_else(|| panic!("{}: mission.toml has no `{key}`", spec.name));
                }
                at.as_float().or_else(|| at.as_integer().map(|i| i as f64)).expect("a number")
            }
        };
        assert_eq!(flown, expected, "{}", spec.name);
        assert!((spec.min..=spec.max).contains(&flown), "{}: its default {flown} is outside its range", spec.name);
    }
}
