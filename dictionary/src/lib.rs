//! The mission dictionary (the F Prime / XTCE idea), defined once here: every operator parameter,
//! every telecommand, every housekeeping channel with its limits and every event source. Flight
//! checks a `SetParameter` against it before it applies one and names its events' sources by it;
//! the ground refuses what flight would refuse before anything goes up, asks for confirmation of
//! the hazardous commands, serves it at `GET /api/dictionary` (the console's forms, limit lines
//! and filters come from it) and writes it as XTCE ([`xtce`]); docs/ICD.md's tables are held to it
//! by tests.
//!
//! Parameters are a closed set ([`Parameter`]): code reads one by its variant, never by a string,
//! so a misspelt name cannot come back as "no value" and lift a limit.

pub mod channels;
pub mod events;
pub mod telecommands;
pub mod xtce;

use serde::Serialize;

pub use channels::{Channel, Level, MissionLimits, NodeLimits};
pub use events::{EVENTS, EventSource, EventSpec};
pub use telecommands::{TELECOMMANDS, TelecommandSpec, is_hazardous};

/// An operator parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Parameter {
    HousekeepingIntervalS,
    AckTimeoutS,
    MaxChipsPerFrame,
    ChipSizePx,
    MaxDuty,
}

/// The values a parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    Real,
    /// A whole number (carried as a real on the uplink).
    Integer,
}

/// What a parameter is before any operator sets it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Default {
    /// The mission file's value at this key (`flight.products.chip_size_px`).
    MissionKey(&'static str),
    Value(f64),
}

/// One parameter's definition.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ParameterSpec {
    pub parameter: Parameter,
    /// Its name on the uplink and in the API.
    pub name: &'static str,
    pub value_type: ValueType,
    pub unit: &'static str,
    /// The values flight accepts, both ends included.
    pub min: f64,
    pub max: f64,
    pub default: Default,
    pub description: &'static str,
}

/// Every operator parameter.
pub const PARAMETERS: &[ParameterSpec] = &[
    ParameterSpec {
        parameter: Parameter::HousekeepingIntervalS,
        name: "housekeeping_interval_s",
        value_type: ValueType::Real,
        unit: "s",
        min: 1.0,
        max: 86_400.0,
        default: Default::MissionKey("flight.products.housekeeping_interval_s"),
        description: "time between housekeeping products",
    },
    ParameterSpec {
        parameter: Parameter::AckTimeoutS,
        name: "ack_timeout_s",
        value_type: ValueType::Real,
        unit: "s",
        min: 1.0,
        max: 86_400.0,
        default: Default::MissionKey("flight.downlink.ack_timeout_s"),
        description: "a product sent and not acknowledged within this is sent again",
    },
    ParameterSpec {
        parameter: Parameter::MaxChipsPerFrame,
        name: "max_chips_per_frame",
        value_type: ValueType::Integer,
        unit: "chips",
        min: 0.0,
        max: 1000.0,
        default: Default::MissionKey("flight.products.max_chips_per_frame"),
        description: "image chips made of a frame's detections, the best first",
    },
    ParameterSpec {
        parameter: Parameter::ChipSizePx,
        name: "chip_size_px",
        value_type: ValueType::Integer,
        unit: "px",
        min: 8.0,
        max: 4096.0,
        default: Default::MissionKey("flight.products.chip_size_px"),
        description: "side of a detection's image chip",
    },
    ParameterSpec {
        parameter: Parameter::MaxDuty,
        name: "max_duty",
        value_type: ValueType::Real,
        unit: "",
        min: 0.0,
        max: 1.0,
        default: Default::Value(1.0),
        description: "the most of its time the payload may compute, below what the thermal and power forecast allows",
    },
];

/// Why a parameter value is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParameterError {
    #[error("no parameter `{name}` (known: {known})", known = known_names())]
    Unknown { name: String },
    #[error("`{name}` must be within {min} to {max} {unit}, not {value}")]
    OutOfRange { name: &'static str, value: f64, min: f64, max: f64, unit: &'static str },
    #[error("`{name}` must be a whole number, not {value}")]
    NotWhole { name: &'static str, value: f64 },
}

fn known_names() -> String {
    PARAMETERS.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
}

impl Parameter {
    pub fn spec(self) -> &'static ParameterSpec {
        // the table lists the variants in their order: a test holds it to the enum
        &PARAMETERS[self as usize]
    }

    pub fn named(name: &str) -> Option<Self> {
        PARAMETERS.iter().find(|p| p.name == name).map(|p| p.parameter)
    }

    /// The parameter `name` if `value` is one it takes: in range (a NaN is in no range) and,
    /// for an integer one, whole.
    pub fn check(name: &str, value: f64) -> Result<Self, ParameterError> {
        let spec = PARAMETERS
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| ParameterError::Unknown { name: name.to_owned() })?;
        if !(spec.min..=spec.max).contains(&value) {
            return Err(ParameterError::OutOfRange {
                name: spec.name,
                value,
                min: spec.min,
                max: spec.max,
                unit: spec.unit,
            });
        }
        if spec.value_type == ValueType::Integer && value.fract() != 0.0 {
            return Err(ParameterError::NotWhole { name: spec.name, value });
        }
        Ok(spec.parameter)
    }
}

/// One mission's dictionary (its channels' limits are the mission file's), as
/// `GET /api/dictionary` serves it.
#[derive(Debug, Clone, Serialize)]
pub struct MissionDictionary {
    /// `[mission] name`.
    pub mission: String,
    pub parameters: &'static [ParameterSpec],
    pub telecommands: &'static [TelecommandSpec],
    pub channels: Vec<Channel>,
    pub events: &'static [EventSpec],
}

impl MissionDictionary {
    pub fn new(mission: &str, limits: &MissionLimits) -> Self {
        Self {
            mission: mission.to_owned(),
            parameters: PARAMETERS,
            telecommands: TELECOMMANDS,
            channels: channels::channels(limits),
            events: EVENTS,
        }
    }

    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }
}

/// The parameter table of docs/ICD.md, as markdown rows (a test holds the document to it).
pub fn parameter_table() -> String {
    let mut table = String::from("| parameter | type | unit | range | default |\n| --- | --- | --- | --- | --- |\n");
    for p in PARAMETERS {
        let value_type = match p.value_type {
            ValueType::Real => "real",
            ValueType::Integer => "integer",
        };
        let default = match p.default {
            Default::MissionKey(key) => format!("mission.toml `{key}`"),
            Default::Value(v) => format!("{v}"),
        };
        let unit = if p.unit.is_empty() { "—" } else { p.unit };
        table.push_str(&format!("| `{}` | {value_type} | {unit} | {} to {} | {default} |\n", p.name, p.min, p.max));
    }
    table
}

/// The telecommand table of docs/ICD.md, as markdown rows (a test holds the document to it).
pub fn telecommand_table() -> String {
    use telecommands::{ArgumentType, Hazard};
    let mut table = String::from("| telecommand | arguments | hazardous | what it does |\n| --- | --- | --- | --- |\n");
    for t in TELECOMMANDS {
        let arguments: Vec<String> = t
            .arguments
            .iter()
            .map(|a| {
                let kind = match a.argument_type {
                    ArgumentType::Enumeration { values: [] } => "a name".to_owned(),
                    ArgumentType::Enumeration { values } => values.join(", "),
                    ArgumentType::ParameterName => "an operator parameter".to_owned(),
                    ArgumentType::Real => "real".to_owned(),
                    ArgumentType::Unsigned { bits } => format!("u{bits}"),
                    ArgumentType::TimeMs => "Unix ms".to_owned(),
                    ArgumentType::Bytes { len: Some(len) } => format!("{len} bytes"),
                    ArgumentType::Bytes { len: None } => "bytes".to_owned(),
                    ArgumentType::CommandList => "[(Unix ms, telecommand)]".to_owned(),
                };
                format!("`{}` ({kind})", a.name)
            })
            .collect();
        let hazard = match t.hazard {
            Hazard::Never => "no".to_owned(),
            Hazard::Always => "yes".to_owned(),
            Hazard::WhenArgument { argument, value } => format!("when `{argument}` is {value}"),
            Hazard::WhenContained => "when a command it holds is".to_owned(),
        };
        table.push_str(&format!("| `{}` | {} | {hazard} | {} |\n", t.name, arguments.join(", "), t.description));
    }
    table
}

/// The housekeeping channel table of docs/ICD.md, as markdown rows.
pub fn channel_table() -> String {
    use channels::{CHANNELS, LimitSource};
    let mut table = String::from("| channel | unit | limits | what |\n| --- | --- | --- | --- |\n");
    for c in CHANNELS {
        let limits = match c.limits {
            LimitSource::None => "—",
            LimitSource::NodeTemperature => {
                "alarm: the node's `min_temperature_c`, `max_temperature_c`; warning: `margin_c` inside"
            }
            LimitSource::BatteryMinSoc => "alarm: below `battery_min_soc`; warning: below it plus `margin_soc`",
        };
        table.push_str(&format!("| `{}` | {} | {limits} | {} |\n", c.name, c.unit, c.description));
    }
    table
}

/// The event source table of docs/ICD.md, as markdown rows.
pub fn event_table() -> String {
    let mut table = String::from("| source | severities | what |\n| --- | --- | --- |\n");
    for e in EVENTS {
        let severities: Vec<String> = e.severities.iter().map(|s| format!("{s:?}")).collect();
        table.push_str(&format!("| `{}` | {} | {} |\n", e.name, severities.join(", "), e.description));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_has_one_entry_named_once() {
        let all = [
            Parameter::HousekeepingIntervalS,
            Parameter::AckTimeoutS,
            Parameter::MaxChipsPerFrame,
            Parameter::ChipSizePx,
            Parameter::MaxDuty,
        ];
        assert_eq!(PARAMETERS.len(), all.len());
        for parameter in all {
            assert_eq!(PARAMETERS.iter().filter(|p| p.parameter == parameter).count(), 1, "{parameter:?}");
            assert_eq!(PARAMETERS[parameter as usize].parameter, parameter, "the table in the enum's order");
            assert_eq!(parameter.spec().parameter, parameter);
            assert_eq!(Parameter::named(parameter.spec().name), Some(parameter));
        }
    }

    #[test]
    fn values_outside_a_parameters_range_or_kind_are_refused_naming_it() {
        assert_eq!(Parameter::check("max_duty", 0.5), Ok(Parameter::MaxDuty));
        let unknown = Parameter::check("max_dutty", 0.5).expect_err("misspelt");
        assert!(unknown.to_string().contains("max_dutty") && unknown.to_string().contains("max_duty"), "{unknown}");
        assert!(matches!(Parameter::check("max_duty", 1.5), Err(ParameterError::OutOfRange { .. })));
        assert!(matches!(Parameter::check("max_duty", f64::NAN), Err(ParameterError::OutOfRange { .. })));
        assert!(matches!(Parameter::check("chip_size_px", 64.5), Err(ParameterError::NotWhole { .. })));
        assert_eq!(Parameter::check("chip_size_px", 64.0), Ok(Parameter::ChipSizePx));
    }

    #[test]
    fn the_icd_holds_the_tables_the_dictionary_makes() {
        let icd = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ICD.md")).expect("docs/ICD.md");
        for (name, table) in [
            ("parameter", parameter_table()),
            ("telecommand", telecommand_table()),
            ("channel", channel_table()),
            ("event", event_table()),
        ] {
            assert!(icd.contains(&table), "docs/ICD.md's {name} table differs from:\n{table}");
        }
    }
}
