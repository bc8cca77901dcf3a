//! Every housekeeping channel flight reports, its unit and its limits. Limits are the mission's
//! own: a thermal node's `min_temperature_c`/`max_temperature_c` and `battery_min_soc` are the
//! alarm levels, the scheduler's margins inside them (`margin_c`, `margin_soc`) the warning levels.

use serde::Serialize;

/// Where a channel's limits come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitSource {
    None,
    /// The thermal node's temperature limits.
    NodeTemperature,
    /// `thermal.power.battery_min_soc` (low side only).
    BatteryMinSoc,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChannelSpec {
    /// The channel's name; `{node}` stands for each thermal node's name.
    pub name: &'static str,
    pub unit: &'static str,
    pub limits: LimitSource,
    pub description: &'static str,
}

const fn counter(name: &'static str, description: &'static str) -> ChannelSpec {
    ChannelSpec { name, unit: "count", limits: LimitSource::None, description }
}

/// The channels in the order flight reports them.
pub const CHANNELS: &[ChannelSpec] = &[
    ChannelSpec {
        name: "temperature_{node}_c",
        unit: "degC",
        limits: LimitSource::NodeTemperature,
        description: "the thermal node's temperature",
    },
    ChannelSpec {
        name: "battery_soc",
        unit: "fraction",
        limits: LimitSource::BatteryMinSoc,
        description: "battery state of charge",
    },
    ChannelSpec {
        name: "mode",
        unit: "mode",
        limits: LimitSource::None,
        description: "0 Nominal, 1 Throttled, 2 Safe",
    },
    ChannelSpec {
        name: "gpu_duty",
        unit: "fraction",
        limits: LimitSource::None,
        description: "the payload's allowed compute duty this slot",
    },
    ChannelSpec {
        name: "tiles_per_run",
        unit: "tiles",
        limits: LimitSource::None,
        description: "tiles in the last model run",
    },
    ChannelSpec {
        name: "queue_depth",
        unit: "products",
        limits: LimitSource::None,
        description: "products waiting for downlink or acknowledgement",
    },
    ChannelSpec {
        name: "spool_waiting",
        unit: "frames",
        limits: LimitSource::None,
        description: "frames in the spool not yet taken",
    },
    counter("frames", "frames taken from the spool"),
    counter("frames_quarantined", "frames set aside as unreadable"),
    counter("frames_duplicate", "frames seen before"),
    counter("tiles", "tiles detected"),
    counter("tiles_screened", "tiles the screen passed over"),
    counter("tiles_late", "tiles past their deadline"),
    counter("tiles_clouded", "tiles over the cloud limit"),
    counter("detections", "detections kept"),
    counter("products_made", "products made"),
    counter("products_acknowledged", "products the ground acknowledged"),
    counter("products_resent", "products sent again"),
    ChannelSpec {
        name: "cadu_bytes_downlinked",
        unit: "bytes",
        limits: LimitSource::None,
        description: "bytes of CADUs sent",
    },
    counter("contacts", "ground contacts"),
    counter("uplink_frames_rejected", "uplink frames refused (authentication, replay, spacecraft)"),
    counter("commands_executed", "commands run"),
    counter("commands_refused", "commands refused"),
    counter("upload_segments", "upload segments stored"),
    counter("upload_segments_refused", "upload segments refused"),
    counter("upsets_detected", "radiation upsets caught"),
    counter("faults", "error events"),
    counter("starts", "flight software starts"),
];

/// A thermal node's limits, from the mission file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeLimits {
    pub name: String,
    pub min_temperature_c: f64,
    pub max_temperature_c: f64,
}

/// The mission file's limits that channels take theirs from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissionLimits {
    pub nodes: Vec<NodeLimits>,
    /// `flight.schedule.margin_c`.
    pub margin_c: f64,
    pub battery_min_soc: f64,
    /// `flight.schedule.margin_soc`.
    pub margin_soc: f64,
}

/// The values inside which a channel is within a level (an open side has no bound).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Range {
    pub low: Option<f64>,
    pub high: Option<f64>,
}

impl Range {
    fn contains(&self, value: f64) -> bool {
        self.low.is_none_or(|low| value >= low) && self.high.is_none_or(|high| value <= high)
    }
}

/// How a value stands against its channel's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Nominal,
    Warning,
    Alarm,
}

/// A channel of this mission, its limits resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Channel {
    pub name: String,
    pub unit: &'static str,
    pub description: String,
    /// Outside this: a warning.
    pub warning: Option<Range>,
    /// Outside this: an alarm.
    pub alarm: Option<Range>,
}

impl Channel {
    pub fn level(&self, value: f64) -> Level {
        let outside = |range: &Option<Range>| range.is_some_and(|r| !r.contains(value));
        // a NaN is inside no range: outside both levels where there are any
        if outside(&self.alarm) {
            Level::Alarm
        } else if outside(&self.warning) {
            Level::Warning
        } else {
            Level::Nominal
        }
    }
}

/// This mission's channels, in the order flight reports them.
pub fn channels(limits: &MissionLimits) -> Vec<Channel> {
    let mut channels = Vec::new();
    for spec in CHANNELS {
        match spec.limits {
            LimitSource::NodeTemperature => channels.extend(limits.nodes.iter().map(|node| Channel {
                name: spec.name.replace("{node}", &node.name),
                unit: spec.unit,
                description: format!("{} ({})", spec.description, node.name),
                warning: Some(Range {
                    low: Some(node.min_temperature_c + limits.margin_c),
                    high: Some(node.max_temperature_c - limits.margin_c),
                }),
                alarm: Some(Range { low: Some(node.min_temperature_c), high: Some(node.max_temperature_c) }),
            })),
            LimitSource::BatteryMinSoc => channels.push(Channel {
                name: spec.name.to_owned(),
                unit: spec.unit,
                description: spec.description.to_owned(),
                warning: Some(Range { low: Some(limits.battery_min_soc + limits.margin_soc), high: None }),
                alarm: Some(Range { low: Some(limits.battery_min_soc), high: None }),
            }),
            LimitSource::None => channels.push(Channel {
                name: spec.name.to_owned(),
                unit: spec.unit,
                description: spec.description.to_owned(),
                warning: None,
                alarm: None,
            }),
        }
    }
    channels
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> MissionLimits {
        MissionLimits {
            nodes: vec![NodeLimits { name: "payload".into(), min_temperature_c: -20.0, max_temperature_c: 80.0 }],
            margin_c: 1.0,
            battery_min_soc: 0.3,
            margin_soc: 0.05,
        }
    }

    #[test]
    fn a_node_temperature_warns_inside_the_margin_and_alarms_past_the_limit() {
        let channels = channels(&limits());
        let payload = channels.iter().find(|c| c.name == "temperature_payload_c").expect("payload channel");
        assert_eq!(payload.level(20.0), Level::Nominal);
        assert_eq!(payload.level(79.5), Level::Warning);
        assert_eq!(payload.level(80.5), Level::Alarm);
        assert_eq!(payload.level(-19.5), Level::Warning);
        assert_eq!(payload.level(-25.0), Level::Alarm);
        assert_eq!(payload.level(f64::NAN), Level::Alarm);
    }

    #[test]
    fn the_battery_warns_above_its_minimum_and_alarms_below() {
        let channels = channels(&limits());
        let soc = channels.iter().find(|c| c.name == "battery_soc").expect("soc channel");
        assert_eq!(soc.level(0.9), Level::Nominal);
        assert_eq!(soc.level(0.32), Level::Warning);
        assert_eq!(soc.level(0.29), Level::Alarm);
        let frames = channels.iter().find(|c| c.name == "frames").expect("frames");
        assert_eq!(frames.level(1e12), Level::Nominal);
    }
}
