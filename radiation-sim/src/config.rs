//! The view of the mission file a campaign needs: the sections of both binaries it drives.

use std::path::Path;

use kestrel_mission::{MissionError, MissionFile, MissionInfo};
use serde::Deserialize;
use serde::de::IgnoredAny;

/// A campaign starts the real `flight` and `ground` binaries, so the mission must declare both;
/// their contents are theirs to check.
#[derive(Debug, Deserialize)]
pub struct CampaignMission {
    pub mission: MissionInfo,
    #[allow(dead_code)]
    flight: IgnoredAny,
    #[allow(dead_code)]
    ground: IgnoredAny,
}

impl CampaignMission {
    pub fn load(path: &Path) -> Result<Self, MissionError> {
        MissionFile::read(path)?.parse()
    }
}
