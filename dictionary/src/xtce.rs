//! The dictionary as an XTCE 1.2 document (OMG's XML Telemetric and Command Exchange, namespace
//! `http://www.omg.org/spec/XTCE/20180204`) that Yamcs and other ground systems load: the
//! housekeeping channels as parameters with their alarm ranges (warning and critical), the event
//! sources and severities as enumerated parameters, and the telecommands as meta-commands, the
//! hazardous ones marked critical, with one `SetParameter` child per operator parameter (its
//! range as the value's valid range). It names and bounds; it does not describe Kestrel's packet
//! encoding (postcard), which docs/ICD.md does.

use std::fmt::Write;

use crate::channels::Range;
use crate::telecommands::{ArgumentType, Hazard, MODES};
use crate::{MissionDictionary, PARAMETERS, ValueType};

pub const NAMESPACE: &str = "http://www.omg.org/spec/XTCE/20180204";

/// `text` with XML's special characters escaped, for an attribute or element.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn range_element(out: &mut String, element: &str, range: &Range) {
    let mut attributes = String::new();
    if let Some(low) = range.low {
        write!(attributes, r#" minInclusive="{low}""#).expect("string");
    }
    if let Some(high) = range.high {
        write!(attributes, r#" maxInclusive="{high}""#).expect("string");
    }
    writeln!(out, "            <xtce:{element}{attributes}/>").expect("string");
}

fn enumeration(out: &mut String, element: &str, name: &str, description: &str, labels: &[&str]) {
    writeln!(out, r#"      <xtce:{element} name="{}" shortDescription="{}">"#, escape(name), escape(description))
        .expect("string");
    out.push_str("        <xtce:IntegerDataEncoding sizeInBits=\"8\" encoding=\"unsigned\"/>\n");
    out.push_str("        <xtce:EnumerationList>\n");
    for (value, label) in labels.iter().enumerate() {
        writeln!(out, r#"          <xtce:Enumeration value="{value}" label="{}"/>"#, escape(label)).expect("string");
    }
    out.push_str("        </xtce:EnumerationList>\n");
    writeln!(out, "      </xtce:{element}>").expect("string");
}

fn telemetry(out: &mut String, dictionary: &MissionDictionary) {
    out.push_str("  <xtce:TelemetryMetaData>\n    <xtce:ParameterTypeSet>\n");
    for channel in &dictionary.channels {
        writeln!(out, r#"      <xtce:FloatParameterType name="{}_type" sizeInBits="64">"#, channel.name)
            .expect("string");
        writeln!(out, "        <xtce:UnitSet><xtce:Unit>{}</xtce:Unit></xtce:UnitSet>", escape(channel.unit))
            .expect("string");
        out.push_str("        <xtce:FloatDataEncoding encoding=\"IEEE754_1985\" sizeInBits=\"64\"/>\n");
        if channel.warning.is_some() || channel.alarm.is_some() {
            out.push_str("        <xtce:DefaultAlarm>\n          <xtce:StaticAlarmRanges>\n");
            if let Some(warning) = &channel.warning {
                range_element(out, "WarningRange", warning);
            }
            if let Some(alarm) = &channel.alarm {
                range_element(out, "CriticalRange", alarm);
            }
            out.push_str("          </xtce:StaticAlarmRanges>\n        </xtce:DefaultAlarm>\n");
        }
        out.push_str("      </xtce:FloatParameterType>\n");
    }
    let sources: Vec<&str> = dictionary.events.iter().map(|e| e.name).collect();
    enumeration(out, "EnumeratedParameterType", "event_source_type", "where an on-board event comes from", &sources);
    enumeration(
        out,
        "EnumeratedParameterType",
        "event_severity_type",
        "an event's severity",
        &["Info", "Warning", "Error"],
    );
    out.push_str("    </xtce:ParameterTypeSet>\n    <xtce:ParameterSet>\n");
    for channel in &dictionary.channels {
        writeln!(
            out,
            r#"      <xtce:Parameter name="{0}" parameterTypeRef="{0}_type" shortDescription="{1}"/>"#,
            channel.name,
            escape(&channel.description)
        )
        .expect("string");
    }
    let events: Vec<String> = dictionary.events.iter().map(|e| format!("{}: {}", e.name, e.description)).collect();
    writeln!(
        out,
        r#"      <xtce:Parameter name="event_source" parameterTypeRef="event_source_type"><xtce:LongDescription>{}</xtce:LongDescription></xtce:Parameter>"#,
        escape(&events.join("; "))
    )
    .expect("string");
    out.push_str("      <xtce:Parameter name=\"event_severity\" parameterTypeRef=\"event_severity_type\"/>\n");
    out.push_str("    </xtce:ParameterSet>\n  </xtce:TelemetryMetaData>\n");
}

/// The argument type's name in the document, and its definition.
fn argument_type(command: &str, argument: &str, argument_type: &ArgumentType) -> (String, String) {
    let name = format!("{command}_{argument}_type");
    let definition = match argument_type {
        ArgumentType::Enumeration { values } => {
            let mut out = String::new();
            let values: &[&str] = if values.is_empty() { &["any_manifest_model"] } else { values };
            enumeration(&mut out, "EnumeratedArgumentType", &name, argument, values);
            return (name, out);
        }
        ArgumentType::ParameterName => {
            let mut out = String::new();
            let names: Vec<&str> = PARAMETERS.iter().map(|p| p.name).collect();
            enumeration(&mut out, "EnumeratedArgumentType", &name, "an operator parameter", &names);
            return (name, out);
        }
        ArgumentType::Real => format!(
            "      <xtce:FloatArgumentType name=\"{name}\" sizeInBits=\"64\">\n        <xtce:FloatDataEncoding encoding=\"IEEE754_1985\" sizeInBits=\"64\"/>\n      </xtce:FloatArgumentType>\n"
        ),
        ArgumentType::Unsigned { bits } => format!(
            "      <xtce:IntegerArgumentType name=\"{name}\" sizeInBits=\"{bits}\" signed=\"false\">\n        <xtce:IntegerDataEncoding sizeInBits=\"{bits}\" encoding=\"unsigned\"/>\n      </xtce:IntegerArgumentType>\n"
        ),
        ArgumentType::TimeMs => format!(
            "      <xtce:IntegerArgumentType name=\"{name}\" sizeInBits=\"64\" signed=\"true\">\n        <xtce:UnitSet><xtce:Unit>ms</xtce:Unit></xtce:UnitSet>\n        <xtce:IntegerDataEncoding sizeInBits=\"64\" encoding=\"twosComplement\"/>\n      </xtce:IntegerArgumentType>\n"
        ),
        ArgumentType::Bytes { len } => {
            let size = match len {
                Some(len) => format!("<xtce:FixedValue>{}</xtce:FixedValue>", len * 8),
                None => "<xtce:FixedValue>0</xtce:FixedValue>".to_owned(),
            };
            format!(
                "      <xtce:BinaryArgumentType name=\"{name}\">\n        <xtce:BinaryDataEncoding><xtce:SizeInBits>{size}</xtce:SizeInBits></xtce:BinaryDataEncoding>\n      </xtce:BinaryArgumentType>\n"
            )
        }
        ArgumentType::CommandList => format!(
            "      <xtce:BinaryArgumentType name=\"{name}\" shortDescription=\"(Unix ms, telecommand) pairs, postcard-encoded (docs/ICD.md)\">\n        <xtce:BinaryDataEncoding><xtce:SizeInBits><xtce:FixedValue>0</xtce:FixedValue></xtce:SizeInBits></xtce:BinaryDataEncoding>\n      </xtce:BinaryArgumentType>\n"
        ),
    };
    (name, definition)
}

fn commands(out: &mut String, dictionary: &MissionDictionary) {
    let mut types = String::new();
    let mut meta = String::new();
    for spec in dictionary.telecommands {
        writeln!(
            meta,
            r#"      <xtce:MetaCommand name="{}" shortDescription="{}">"#,
            spec.name,
            escape(spec.description)
        )
        .expect("string");
        meta.push_str("        <xtce:ArgumentList>\n");
        for argument in spec.arguments {
            let (type_name, definition) = argument_type(spec.name, argument.name, &argument.argument_type);
            types.push_str(&definition);
            writeln!(
                meta,
                r#"          <xtce:Argument name="{}" argumentTypeRef="{type_name}" shortDescription="{}"/>"#,
                argument.name,
                escape(argument.description)
            )
            .expect("string");
        }
        meta.push_str("        </xtce:ArgumentList>\n");
        match spec.hazard {
            Hazard::Never => {}
            Hazard::Always => meta.push_str(
                "        <xtce:DefaultSignificance consequenceLevel=\"critical\" reasonForWarning=\"needs an operator's confirmation\"/>\n",
            ),
            Hazard::WhenArgument { argument, value } => writeln!(
                meta,
                r#"        <xtce:DefaultSignificance consequenceLevel="normal" reasonForWarning="critical, and needs an operator's confirmation, when {argument} is {value}"/>"#
            )
            .expect("string"),
            Hazard::WhenContained => meta.push_str(
                "        <xtce:DefaultSignificance consequenceLevel=\"normal\" reasonForWarning=\"critical, and needs an operator's confirmation, when a command it holds is\"/>\n",
            ),
        }
        meta.push_str("      </xtce:MetaCommand>\n");
    }
    // one child of SetParameter per parameter: its name assigned, its value bounded
    for parameter in PARAMETERS {
        let type_name = format!("set_{}_value_type", parameter.name);
        // carried as a real on the uplink, whole or not
        let whole = if parameter.value_type == ValueType::Integer { " (a whole number)" } else { "" };
        let unit = if parameter.unit.is_empty() {
            String::new()
        } else {
            format!("<xtce:UnitSet><xtce:Unit>{}</xtce:Unit></xtce:UnitSet>", escape(parameter.unit))
        };
        writeln!(
            types,
            "      <xtce:FloatArgumentType name=\"{type_name}\" shortDescription=\"{} to {}{whole}\" sizeInBits=\"64\">\n        {unit}\n        <xtce:FloatDataEncoding encoding=\"IEEE754_1985\" sizeInBits=\"64\"/>\n        <xtce:ValidRangeSet><xtce:ValidRange minInclusive=\"{}\" maxInclusive=\"{}\"/></xtce:ValidRangeSet>\n      </xtce:FloatArgumentType>",
            parameter.min, parameter.max, parameter.min, parameter.max
        )
        .expect("string");
        writeln!(
            meta,
            "      <xtce:MetaCommand name=\"set_{0}\" shortDescription=\"{1}\">\n        <xtce:BaseMetaCommand metaCommandRef=\"SetParameter\">\n          <xtce:ArgumentAssignmentList><xtce:ArgumentAssignment argumentName=\"name\" argumentValue=\"{0}\"/></xtce:ArgumentAssignmentList>\n        </xtce:BaseMetaCommand>\n        <xtce:ArgumentList><xtce:Argument name=\"value\" argumentTypeRef=\"{type_name}\"/></xtce:ArgumentList>\n      </xtce:MetaCommand>",
            parameter.name,
            escape(parameter.description)
        )
        .expect("string");
    }
    out.push_str("  <xtce:CommandMetaData>\n    <xtce:ArgumentTypeSet>\n");
    out.push_str(&types);
    out.push_str("    </xtce:ArgumentTypeSet>\n    <xtce:MetaCommandSet>\n");
    out.push_str(&meta);
    out.push_str("    </xtce:MetaCommandSet>\n  </xtce:CommandMetaData>\n");
}

/// The whole dictionary as one XTCE `SpaceSystem` named for the mission.
pub fn document(dictionary: &MissionDictionary) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    writeln!(
        out,
        r#"<xtce:SpaceSystem xmlns:xtce="{NAMESPACE}" name="{}" shortDescription="Kestrel mission dictionary (kestrel-dictionary)">"#,
        escape(&dictionary.mission)
    )
    .expect("string");
    let modes = MODES.join(", ");
    writeln!(out, "  <xtce:LongDescription>Housekeeping channels with the mission's limits, event sources, and telecommands (modes {modes}).</xtce:LongDescription>").expect("string");
    telemetry(&mut out, dictionary);
    commands(&mut out, dictionary);
    out.push_str("</xtce:SpaceSystem>\n");
    out
}
