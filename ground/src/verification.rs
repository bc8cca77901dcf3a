//! A command's life as stages with times (PUS service 1 and Yamcs's verifiers): what the ground
//! did with it, from its audit entries, then what the spacecraft reported, from its verification
//! reports, and `timed_out` when it was released and no report came within the configured number
//! of contacts. The ground's stages are written to the audit by [`GroundStage::outcome`]
//! and read back by [`GroundStage::parse`], here only, so the two cannot drift apart.

use kestrel_link::product::{Body, CommandReport, CommandStage, Product};
use serde::Serialize;

use crate::archive::{Archive, ArchiveError, AuditEntry, audit_prefix};

/// What the ground did with a command after it was submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "stage")]
pub enum GroundStage {
    /// A hazardous command, held until an operator confirms it.
    AwaitingConfirmation,
    Confirmed {
        by: String,
    },
    /// No station was connected: it waits in the queue for the next contact.
    Queued,
    Released(Released),
    Cancelled {
        by: String,
    },
    /// It never went up, and why.
    NotSent {
        reason: String,
    },
}

/// A command's frames on the uplink stream: through this many stations, in these ARSNs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Released {
    pub stations: usize,
    pub first_arsn: u64,
    pub last_arsn: u64,
}

const AWAITING: &str = "awaiting confirmation (hazardous)";
const CONFIRMED: &str = "confirmed by ";
const QUEUED: &str = "queued: no station connected";
const RELEASED: &str = "released through ";
const CANCELLED: &str = "cancelled by ";
const NOT_SENT: &str = "not sent: ";

impl GroundStage {
    /// The audit entry's outcome text that records this stage of command `id`.
    pub fn outcome(&self, id: u64) -> String {
        let said = match self {
            Self::AwaitingConfirmation => AWAITING.to_owned(),
            Self::Confirmed { by } => format!("{CONFIRMED}{by}"),
            Self::Queued => QUEUED.to_owned(),
            Self::Released(Released { stations, first_arsn, last_arsn }) => {
                format!("{RELEASED}{stations} station(s), ARSN {first_arsn} to {last_arsn}")
            }
            Self::Cancelled { by } => format!("{CANCELLED}{by}, never sent"),
            Self::NotSent { reason } => format!("{NOT_SENT}{reason}"),
        };
        format!("{} {said}", audit_prefix(id))
    }

    /// The stage an audit outcome about command `id` records.
    pub fn parse(outcome: &str, id: u64) -> Option<Self> {
        let said = outcome.strip_prefix(&audit_prefix(id))?.trim_start();
        if said == AWAITING {
            return Some(Self::AwaitingConfirmation);
        }
        if said == QUEUED {
            return Some(Self::Queued);
        }
        if let Some(by) = said.strip_prefix(CONFIRMED) {
            return Some(Self::Confirmed { by: by.to_owned() });
        }
        if let Some(by) = said.strip_prefix(CANCELLED).and_then(|s| s.strip_suffix(", never sent")) {
            return Some(Self::Cancelled { by: by.to_owned() });
        }
        if let Some(reason) = said.strip_prefix(NOT_SENT) {
            return Some(Self::NotSent { reason: reason.to_owned() });
        }
        let released = said.strip_prefix(RELEASED)?;
        let (stations, arsns) = released.split_once(" station(s), ARSN ")?;
        let (first, last) = arsns.split_once(" to ")?;
        Some(Self::Released(Released {
            stations: stations.parse().ok()?,
            first_arsn: first.parse().ok()?,
            last_arsn: last.parse().ok()?,
        }))
    }
}

/// One stage of a command's life.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Stage {
    /// Submitted, or a later ground stage; ground Unix ms.
    Ground {
        unix_ms: i64,
        #[serde(flatten)]
        stage: GroundStageOrSubmitted,
    },
    /// A verification report from the spacecraft; spacecraft Unix ms.
    Spacecraft {
        spacecraft_ms: i64,
        tagged_at: Option<i64>,
        #[serde(flatten)]
        stage: SpacecraftStage,
    },
    /// Released, and no report came in the `contacts` contacts since.
    TimedOut { stage: &'static str, contacts: u64 },
}

/// A verification report's stage, named as the API names it (the link's [`CommandStage`] is
/// the same on the wire, where it must stay externally tagged for postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "stage")]
pub enum SpacecraftStage {
    Accepted,
    Refused { reason: String },
    Completed { detail: String },
    Failed { reason: String },
}

impl From<CommandStage> for SpacecraftStage {
    fn from(stage: CommandStage) -> Self {
        match stage {
            CommandStage::Accepted => Self::Accepted,
            CommandStage::Refused { reason } => Self::Refused { reason },
            CommandStage::Completed { detail } => Self::Completed { detail },
            CommandStage::Failed { reason } => Self::Failed { reason },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum GroundStageOrSubmitted {
    Submitted { stage: &'static str },
    Stage(GroundStage),
}

/// A command's life as `GET /api/commands/{id}` gives it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandLife {
    pub id: u64,
    pub operator: String,
    pub command: String,
    pub stages: Vec<Stage>,
}

impl CommandLife {
    /// Whether the spacecraft has sent any report about it.
    pub fn reported(&self) -> bool {
        self.stages.iter().any(|stage| matches!(stage, Stage::Spacecraft { .. }))
    }
}

/// Command `id`'s life, or `None` when the audit has no such command. A command released and
/// not reported on by the time `timeout_contacts` more contacts began has timed out.
pub fn command_life(
    archive: &dyn Archive,
    id: u64,
    timeout_contacts: u64,
) -> Result<Option<CommandLife>, ArchiveError> {
    let audit: Vec<AuditEntry> = archive.audit_of(id)?;
    let Some(submitted) = audit.iter().find(|entry| entry.id == id) else { return Ok(None) };
    let mut stages = vec![Stage::Ground {
        unix_ms: submitted.unix_ms,
        stage: GroundStageOrSubmitted::Submitted { stage: "submitted" },
    }];
    let mut released_at = None;
    for entry in audit.iter().filter(|entry| entry.id != id) {
        let Some(stage) = GroundStage::parse(&entry.outcome, id) else { continue };
        if matches!(stage, GroundStage::Released(_)) {
            released_at.get_or_insert(entry.unix_ms);
        }
        stages.push(Stage::Ground { unix_ms: entry.unix_ms, stage: GroundStageOrSubmitted::Stage(stage) });
    }
    let mut reports: Vec<CommandReport> = archive
        .command_reports(id)?
        .iter()
        .filter_map(|bytes| match Product::decode(bytes) {
            Ok(Product { body: Body::CommandReport(report), .. }) => Some(report),
            _ => None,
        })
        .collect();
    reports.sort_by_key(CommandReport::order);
    stages.extend(reports.into_iter().map(|report| Stage::Spacecraft {
        spacecraft_ms: report.time_ms,
        tagged_at: report.tagged_at,
        stage: report.stage.into(),
    }));
    let mut life = CommandLife { id, operator: submitted.operator.clone(), command: submitted.command.clone(), stages };
    if let Some(released_at) = released_at
        && !life.reported()
    {
        let contacts = archive.contacts_since(released_at)?;
        if contacts >= timeout_contacts {
            life.stages.push(Stage::TimedOut { stage: "timed_out", contacts });
        }
    }
    Ok(Some(life))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ground_stage_reads_back_as_written() {
        let stages = [
            GroundStage::AwaitingConfirmation,
            GroundStage::Confirmed { by: "ada".into() },
            GroundStage::Queued,
            GroundStage::Released(Released { stations: 2, first_arsn: 1_025, last_arsn: 1_031 }),
            GroundStage::Cancelled { by: "grace hopper".into() },
            GroundStage::NotSent { reason: "too large for one frame".into() },
        ];
        for stage in stages {
            let id = u64::MAX - 7;
            assert_eq!(GroundStage::parse(&stage.outcome(id), id), Some(stage.clone()), "{stage:?}");
            assert_eq!(GroundStage::parse(&stage.outcome(id), id + 1), None, "another command's");
        }
        assert_eq!(GroundStage::parse("command 5: something else", 5), None);
    }

    #[test]
    fn stages_serialise_with_their_names() {
        let released = Stage::Ground {
            unix_ms: 7,
            stage: GroundStageOrSubmitted::Stage(GroundStage::Released(Released {
                stations: 1,
                first_arsn: 3,
                last_arsn: 3,
            })),
        };
        let json = serde_json::to_value(&released).expect("json");
        assert_eq!(
            json,
            serde_json::json!({ "unix_ms": 7, "stage": "released", "stations": 1, "first_arsn": 3, "last_arsn": 3 })
        );
        let refused = Stage::Spacecraft {
            spacecraft_ms: 9,
            tagged_at: None,
            stage: CommandStage::Refused { reason: "no".into() }.into(),
        };
        let json = serde_json::to_value(&refused).expect("json");
        assert_eq!(json["stage"], "refused");
        assert_eq!(json["reason"], "no");
    }
}
