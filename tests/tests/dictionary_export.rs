//! `ground dictionary`: the mission dictionary written as XTCE validates against the XTCE 1.2
//! schema (OMG's SpaceSystem.xsd as the PyPI package space-packet-parser 6.2.0 ships it, checked by
//! the `xmlschema` validator; `scripts/setup-xtce.sh` puts both in the Kestrel cache), and its
//! limits are the mission file's.

use std::path::PathBuf;
use std::process::Command;

use kestrel_e2e::{Scratch, run, stderr};

fn xtce_dir() -> PathBuf {
    let dir = kestrel_flight::onnx_runtime::cache_dir().join("xtce-1.2");
    assert!(
        dir.join("SpaceSystem.xsd").is_file() && dir.join("venv/bin/python").is_file(),
        "{} lacks the XTCE 1.2 schema or its validator: run scripts/setup-xtce.sh",
        dir.display()
    );
    dir
}

/// The validator's verdict on `document`: `Ok` when valid, else what it said.
fn validate(document: &std::path::Path) -> Result<(), String> {
    let dir = xtce_dir();
    let script = kestrel_e2e::workspace_root().join("scripts/validate-xtce.py");
    let output = Command::new(dir.join("venv/bin/python"))
        .arg(script)
        .arg(dir.join("SpaceSystem.xsd"))
        .arg(document)
        .output()
        .expect("run the validator");
    let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    if output.status.success() { Ok(()) } else { Err(said) }
}

#[test]
fn the_xtce_dictionary_validates_against_xtce_1_2_and_carries_the_missions_limits() {
    let scratch = Scratch::new();
    let mission = scratch.mission_with("max_temperature_c = 80.0", "max_temperature_c = 75.0");
    let (xtce, json) = (scratch.path().join("kestrel.xtce.xml"), scratch.path().join("dictionary.json"));
    let output = run(
        "ground",
        &[
            "dictionary",
            "--mission",
            mission.to_str().expect("path"),
            "--xtce",
            xtce.to_str().expect("path"),
            "--json",
            json.to_str().expect("path"),
        ],
        scratch.path(),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    validate(&xtce).unwrap_or_else(|said| panic!("the XTCE export does not validate:\n{said}"));

    let text = std::fs::read_to_string(&xtce).expect("xtce");
    let payload = text.find(r#"name="temperature_payload_c_type""#).expect("the payload's temperature");
    let payload = &text[payload..payload + text[payload..].find("</xtce:FloatParameterType>").expect("end")];
    assert!(payload.contains(r#"<xtce:CriticalRange minInclusive="-20" maxInclusive="75"/>"#), "{payload}");
    assert!(payload.contains(r#"<xtce:WarningRange minInclusive="-19" maxInclusive="74"/>"#), "{payload}");
    assert!(text.contains(r#"<xtce:MetaCommand name="InstallModel""#));
    assert!(text.contains(r#"<xtce:ValidRange minInclusive="0" maxInclusive="1"/>"#), "max_duty's range");

    let dictionary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("json");
    let channel = |name: &str| {
        dictionary["channels"].as_array().expect("channels").iter().find(|c| c["name"] == name).cloned().expect(name)
    };
    assert_eq!(channel("temperature_payload_c")["alarm"]["high"], 75.0);
    assert_eq!(channel("battery_soc")["alarm"]["low"], 0.3);
    assert_eq!(channel("battery_soc")["warning"]["low"], 0.35);
    assert_eq!(dictionary["telecommands"].as_array().expect("telecommands").len(), 6);
}

#[test]
fn the_validator_refuses_a_document_that_breaks_the_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let document = dir.path().join("broken.xml");
    // a parameter type missing its required name, and an element XTCE does not have
    std::fs::write(
        &document,
        r#"<?xml version="1.0"?><xtce:SpaceSystem xmlns:xtce="http://www.omg.org/spec/XTCE/20180204" name="k"><xtce:TelemetryMetaData><xtce:ParameterTypeSet><xtce:FloatParameterType/></xtce:ParameterTypeSet><xtce:Channels/></xtce:TelemetryMetaData></xtce:SpaceSystem>"#,
    )
    .expect("write");
    let said = validate(&document).expect_err("invalid");
    assert!(said.contains("name") && said.contains("Channels"), "{said}");
}
