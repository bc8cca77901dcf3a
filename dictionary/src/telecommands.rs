//! Every telecommand, its arguments and whether it is hazardous. The match in
//! [`TelecommandSpec::of`] is exhaustive: a telecommand added to the link without an entry here
//! does not compile.

use kestrel_link::uplink::Telecommand;
use serde::Serialize;

/// What an argument carries.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ArgumentType {
    /// One of these names.
    Enumeration { values: &'static [&'static str] },
    /// The name of an operator parameter ([`crate::PARAMETERS`]).
    ParameterName,
    /// A real; its range is the parameter's, for `set_parameter`'s value.
    Real,
    /// An unsigned integer of this many bits (ids are 64-bit: never round them to a double).
    Unsigned { bits: u32 },
    /// Unix milliseconds, spacecraft clock.
    TimeMs,
    /// Bytes (a JSON array of numbers in the API; the console takes hexadecimal digits).
    Bytes { len: Option<u32> },
    /// A list of (time, telecommand) pairs.
    CommandList,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ArgumentSpec {
    pub name: &'static str,
    #[serde(flatten)]
    pub argument_type: ArgumentType,
    pub description: &'static str,
}

/// When a command needs an operator's explicit confirmation before it goes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "when")]
pub enum Hazard {
    Never,
    Always,
    /// When argument `argument` is `value`.
    WhenArgument {
        argument: &'static str,
        value: &'static str,
    },
    /// When any command it holds is (a time-tagged sequence).
    WhenContained,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TelecommandSpec {
    /// The variant's name in the API's JSON (`{"SetMode": {...}}`).
    pub name: &'static str,
    pub arguments: &'static [ArgumentSpec],
    pub hazard: Hazard,
    pub description: &'static str,
}

/// The modes' names, in [`Mode`]'s order.
pub const MODES: &[&str] = &["Nominal", "Throttled", "Safe"];

const ID: ArgumentType = ArgumentType::Unsigned { bits: 64 };
const PIXELS: ArgumentType = ArgumentType::Unsigned { bits: 32 };

pub const TELECOMMANDS: &[TelecommandSpec] = &[
    TelecommandSpec {
        name: "SetMode",
        arguments: &[ArgumentSpec {
            name: "mode",
            argument_type: ArgumentType::Enumeration { values: MODES },
            description: "Nominal: full duty the forecast allows; Throttled: reduced; Safe: no detection",
        }],
        hazard: Hazard::WhenArgument { argument: "mode", value: "Safe" },
        description: "set the flight software's mode",
    },
    TelecommandSpec {
        name: "SetParameter",
        arguments: &[
            ArgumentSpec {
                name: "name",
                argument_type: ArgumentType::ParameterName,
                description: "an operator parameter",
            },
            ArgumentSpec {
                name: "value",
                argument_type: ArgumentType::Real,
                description: "within the parameter's range",
            },
        ],
        hazard: Hazard::Never,
        description: "set an operator parameter (held in the checkpoint)",
    },
    TelecommandSpec {
        name: "Redownlink",
        arguments: &[ArgumentSpec { name: "product_id", argument_type: ID, description: "the product's id" }],
        hazard: Hazard::Never,
        description: "send a product again",
    },
    TelecommandSpec {
        name: "RequestTile",
        arguments: &[
            ArgumentSpec { name: "frame_id", argument_type: ID, description: "the frame's id" },
            ArgumentSpec { name: "x", argument_type: PIXELS, description: "left edge, frame pixels" },
            ArgumentSpec { name: "y", argument_type: PIXELS, description: "top edge, frame pixels" },
            ArgumentSpec { name: "width", argument_type: PIXELS, description: "frame pixels" },
            ArgumentSpec { name: "height", argument_type: PIXELS, description: "frame pixels" },
        ],
        hazard: Hazard::Never,
        description: "downlink a full-resolution tile of a frame",
    },
    TelecommandSpec {
        name: "TimeTagged",
        arguments: &[ArgumentSpec {
            name: "commands",
            argument_type: ArgumentType::CommandList,
            description: "(Unix ms, telecommand) pairs, each run at its time",
        }],
        hazard: Hazard::WhenContained,
        description: "commands to run at given times",
    },
    TelecommandSpec {
        name: "InstallModel",
        arguments: &[
            ArgumentSpec { name: "transfer", argument_type: ID, description: "the upload's transfer id" },
            ArgumentSpec {
                name: "model",
                argument_type: ArgumentType::Enumeration { values: &[] },
                description: "a model of the manifest",
            },
            ArgumentSpec { name: "length", argument_type: ID, description: "bytes" },
            ArgumentSpec {
                name: "sha256",
                argument_type: ArgumentType::Bytes { len: Some(32) },
                description: "the file's SHA-256",
            },
            ArgumentSpec {
                name: "signature",
                argument_type: ArgumentType::Bytes { len: Some(64) },
                description: "ed25519 over the digest",
            },
        ],
        hazard: Hazard::Always,
        description: "replace a model's weights with an uploaded file (made by POST /api/models/{name})",
    },
];

impl TelecommandSpec {
    pub fn of(command: &Telecommand) -> &'static Self {
        let name = match command {
            Telecommand::SetMode { .. } => "SetMode",
            Telecommand::SetParameter { .. } => "SetParameter",
            Telecommand::Redownlink { .. } => "Redownlink",
            Telecommand::RequestTile { .. } => "RequestTile",
            Telecommand::TimeTagged { .. } => "TimeTagged",
            Telecommand::InstallModel { .. } => "InstallModel",
        };
        TELECOMMANDS.iter().find(|spec| spec.name == name).expect("every telecommand has an entry (a test holds it)")
    }
}

/// Whether `command` needs an operator's confirmation: its own hazard, or, for a time-tagged
/// sequence, any of its commands'.
pub fn is_hazardous(command: &Telecommand) -> bool {
    match (command, TelecommandSpec::of(command).hazard) {
        (Telecommand::TimeTagged { commands }, Hazard::WhenContained) => {
            commands.iter().any(|(_, command)| is_hazardous(command))
        }
        (_, Hazard::Always) => true,
        (_, Hazard::Never) => false,
        (Telecommand::SetMode { mode }, Hazard::WhenArgument { argument: "mode", value }) => {
            MODES[*mode as usize] == value
        }
        (_, Hazard::WhenArgument { .. } | Hazard::WhenContained) => {
            unreachable!("only SetMode's hazard depends on an argument, only TimeTagged holds commands")
        }
    }
}

#[cfg(test)]
mod tests {
    use kestrel_link::uplink::Mode;

    use super::*;

    fn every_variant() -> Vec<Telecommand> {
        vec![
            Telecommand::SetMode { mode: Mode::Safe },
            Telecommand::SetParameter { name: "max_duty".into(), value: 0.5 },
            Telecommand::Redownlink { product_id: 1 },
            Telecommand::RequestTile { frame_id: 1, x: 0, y: 0, width: 1, height: 1 },
            Telecommand::TimeTagged { commands: vec![] },
            Telecommand::InstallModel { transfer: 1, model: "m".into(), length: 1, sha256: [0; 32], signature: vec![] },
        ]
    }

    #[test]
    fn each_telecommand_has_one_entry_named_as_the_api_names_it() {
        let variants = every_variant();
        assert_eq!(variants.len(), TELECOMMANDS.len());
        for command in &variants {
            let spec = TelecommandSpec::of(command);
            let json = serde_json::to_value(command).expect("json");
            let api_name = json.as_object().and_then(|o| o.keys().next().cloned()).expect("externally tagged");
            assert_eq!(spec.name, api_name);
            let fields: Vec<String> = json[&api_name].as_object().expect("fields").keys().cloned().collect();
            let mut arguments: Vec<String> = spec.arguments.iter().map(|a| a.name.to_owned()).collect();
            let mut fields_sorted = fields.clone();
            fields_sorted.sort();
            arguments.sort();
            assert_eq!(arguments, fields_sorted, "{api_name}'s arguments");
        }
    }

    #[test]
    fn the_modes_are_named_in_their_order() {
        for (mode, name) in [(Mode::Nominal, "Nominal"), (Mode::Throttled, "Throttled"), (Mode::Safe, "Safe")] {
            assert_eq!(MODES[mode as usize], name);
            assert_eq!(serde_json::to_value(mode).expect("json"), name);
        }
    }

    #[test]
    fn safe_mode_and_model_installs_are_hazardous_alone_or_time_tagged() {
        assert!(is_hazardous(&Telecommand::SetMode { mode: Mode::Safe }));
        assert!(!is_hazardous(&Telecommand::SetMode { mode: Mode::Nominal }));
        assert!(is_hazardous(&every_variant()[5]));
        assert!(!is_hazardous(&Telecommand::Redownlink { product_id: 3 }));
        let tagged = |command| Telecommand::TimeTagged {
            commands: vec![(1, Telecommand::Redownlink { product_id: 3 }), (2, command)],
        };
        assert!(is_hazardous(&tagged(Telecommand::SetMode { mode: Mode::Safe })));
        assert!(!is_hazardous(&tagged(Telecommand::SetMode { mode: Mode::Throttled })));
    }
}
