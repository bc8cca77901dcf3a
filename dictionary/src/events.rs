//! Every source of on-board events and the severities it reports with. Flight names an event's
//! source by [`EventSource`], so an event cannot come from a source the dictionary lacks.

use kestrel_link::product::Severity;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSource {
    Command,
    Mode,
    Checkpoint,
    Detector,
    Model,
    Upset,
    Spool,
    Ingest,
    Downlink,
    Uplink,
    Upload,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EventSpec {
    pub source: EventSource,
    /// The source as the event product carries it.
    pub name: &'static str,
    pub severities: &'static [Severity],
    pub description: &'static str,
}

use Severity::{Error, Info, Warning};

/// The sources, in [`EventSource`]'s order.
pub const EVENTS: &[EventSpec] = &[
    EventSpec {
        source: EventSource::Command,
        name: "command",
        severities: &[Info, Warning],
        description: "a command ran (info) or was refused (warning); its verification report says the same",
    },
    EventSpec {
        source: EventSource::Mode,
        name: "mode",
        severities: &[Warning],
        description: "the mode changed, and why",
    },
    EventSpec {
        source: EventSource::Checkpoint,
        name: "checkpoint",
        severities: &[Warning, Error],
        description: "the checkpoint was unreadable and set aside, or could not be written",
    },
    EventSpec {
        source: EventSource::Detector,
        name: "detector",
        severities: &[Error],
        description: "a model does not load or does not run",
    },
    EventSpec {
        source: EventSource::Model,
        name: "model",
        severities: &[Error],
        description: "an uploaded model could not be installed",
    },
    EventSpec {
        source: EventSource::Upset,
        name: "upset",
        severities: &[Warning, Error],
        description: "a radiation upset caught in a frame buffer or the model, and what was done",
    },
    EventSpec {
        source: EventSource::Spool,
        name: "spool",
        severities: &[Info, Warning],
        description: "a spool entry was set aside or could not be taken",
    },
    EventSpec {
        source: EventSource::Ingest,
        name: "ingest",
        severities: &[Warning],
        description: "a frame could not be read",
    },
    EventSpec {
        source: EventSource::Downlink,
        name: "downlink",
        severities: &[Warning],
        description: "the ground connection failed, or a product was not sent",
    },
    EventSpec {
        source: EventSource::Uplink,
        name: "uplink",
        severities: &[Warning],
        description: "uplink frames refused, or an authenticated frame not understood",
    },
    EventSpec {
        source: EventSource::Upload,
        name: "upload",
        severities: &[Warning],
        description: "an upload segment was refused",
    },
];

impl EventSource {
    pub fn spec(self) -> &'static EventSpec {
        // the table lists the sources in the enum's order: a test holds it
        &EVENTS[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_source_has_its_entry_in_order_and_a_name_of_its_own() {
        for (i, spec) in EVENTS.iter().enumerate() {
            assert_eq!(spec.source as usize, i, "{spec:?}");
            assert_eq!(spec.source.spec(), spec);
            assert_eq!(serde_json::to_value(spec.source).expect("json"), spec.name);
            assert!(!spec.severities.is_empty());
        }
        assert_eq!(EVENTS.len(), EventSource::Upload as usize + 1);
    }
}
