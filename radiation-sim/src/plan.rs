//! The campaign plan file (TOML): which frames to fly, how fast, and which faults to inject, how
//! many and how. Errors name the file, line and key, like the mission file's.

use std::ops::Range;
use std::path::{Path, PathBuf};

use kestrel_mission::{MissionError, MissionFile};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    frames: Vec<Spanned<PathBuf>>,
    #[serde(default = "default_speedup")]
    speedup: Spanned<f64>,
    #[serde(default = "default_watchdog")]
    watchdog_timeout_s: Spanned<f64>,
    #[serde(default = "default_interval")]
    interval_s: Spanned<f64>,
    /// Flight's upset checks (`[flight.health] check_upsets`): off to measure what they catch.
    #[serde(default = "checks_on")]
    check_upsets: bool,
    faults: Vec<Spanned<Fault>>,
}

fn checks_on() -> bool {
    true
}

fn default_speedup() -> Spanned<f64> {
    Spanned::new(0..0, 100.0)
}
fn default_watchdog() -> Spanned<f64> {
    Spanned::new(0..0, 3.0)
}
fn default_interval() -> Spanned<f64> {
    Spanned::new(0..0, 1.5)
}

/// One kind of fault and how to inject it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// A functional interrupt that kills the process.
    Sigkill { count: u32 },
    /// A functional interrupt that hangs it (SIGSTOP) for `hang_s`, then SIGCONT if still there.
    Hang { count: u32, hang_s: f64 },
    /// Latch-up: power off (SIGKILL), `off_s` without power, power on.
    PowerCycle { count: u32, off_s: f64 },
    /// `bits` random bit flips in the checkpoint's sled file between two runs.
    CheckpointBitflip { count: u32, bits: u32 },
    /// The checkpoint's sled file cut to a random length between two runs.
    CheckpointTruncate { count: u32 },
    /// A single-event upset: one bit flipped at a random address of the running process's
    /// writable memory (through /proc/PID/mem).
    MemorySeu { count: u32 },
    /// Upsets aimed at the image of the frame being processed: the top bit of `bits` random
    /// bytes flipped (flight's fault map says where the image is).
    ImageSeu { count: u32, bits: u32 },
    /// Upsets aimed at the models' weights in flight's memory: the top bit of `bits` random
    /// bytes of them (the fault map says where they are).
    WeightsSeu { count: u32, bits: u32 },
    /// Upsets aimed at the products flight is about to send (read from its queue, held while the
    /// radio transmits): the top bit of `bits` random bytes of them.
    QueueSeu { count: u32, bits: u32 },
    /// Upsets aimed at flight's state in memory (mode, counters, sequence numbers): the top bit
    /// of `bits` random bytes of it (the fault map says where it is).
    StateSeu { count: u32, bits: u32 },
    /// Random bit errors on the downlink at each of these bit error rates, `seconds` each.
    LinkBer { ber: Vec<f64>, seconds: f64 },
    /// `bytes` consecutive downlink bytes overwritten (an error burst).
    LinkBurst { count: u32, bytes: u32 },
    /// `bytes` downlink bytes lost.
    LinkDrop { count: u32, bytes: u32 },
    /// `bytes` downlink bytes sent twice.
    LinkDuplicate { count: u32, bytes: u32 },
    /// `bits` downlink bits lost (a bit slip): what follows arrives shifted.
    LinkSlip { count: u32, bits: u32 },
    /// A thermal excursion: node `node` of the simulated plant suddenly `kelvin` hotter.
    Heat { count: u32, node: String, kelvin: f64 },
    /// A dead battery cell: the battery loses `fraction` of its charge at once.
    DeadCell { count: u32, fraction: f64 },
}

impl Fault {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sigkill { .. } => "sigkill",
            Self::Hang { .. } => "hang",
            Self::PowerCycle { .. } => "power_cycle",
            Self::CheckpointBitflip { .. } => "checkpoint_bitflip",
            Self::CheckpointTruncate { .. } => "checkpoint_truncate",
            Self::MemorySeu { .. } => "memory_seu",
            Self::ImageSeu { .. } => "image_seu",
            Self::StateSeu { .. } => "state_seu",
            Self::WeightsSeu { .. } => "weights_seu",
            Self::QueueSeu { .. } => "queue_seu",
            Self::LinkBer { .. } => "link_ber",
            Self::LinkBurst { .. } => "link_burst",
            Self::LinkDrop { .. } => "link_drop",
            Self::LinkDuplicate { .. } => "link_duplicate",
            Self::LinkSlip { .. } => "link_slip",
            Self::Heat { .. } => "heat",
            Self::DeadCell { .. } => "dead_cell",
        }
    }

    /// How many injections this entry makes.
    pub fn injections(&self) -> u32 {
        match self {
            Self::Sigkill { count }
            | Self::Hang { count, .. }
            | Self::PowerCycle { count, .. }
            | Self::CheckpointBitflip { count, .. }
            | Self::CheckpointTruncate { count }
            | Self::MemorySeu { count }
            | Self::ImageSeu { count, .. }
            | Self::StateSeu { count, .. }
            | Self::WeightsSeu { count, .. }
            | Self::QueueSeu { count, .. }
            | Self::LinkBurst { count, .. }
            | Self::LinkDrop { count, .. }
            | Self::LinkDuplicate { count, .. }
            | Self::LinkSlip { count, .. }
            | Self::Heat { count, .. }
            | Self::DeadCell { count, .. } => *count,
            Self::LinkBer { ber, .. } => ber.len() as u32,
        }
    }

    /// What is wrong with the entry's numbers, if anything: (field, message).
    fn problem(&self) -> Option<(&'static str, String)> {
        let count = self.injections();
        match self {
            _ if count == 0 => Some(("count", "must be at least 1".into())),
            Self::Hang { hang_s, .. } if !(hang_s.is_finite() && *hang_s > 0.0) => {
                Some(("hang_s", format!("must be a positive number of seconds, not {hang_s}")))
            }
            Self::PowerCycle { off_s, .. } if !(off_s.is_finite() && *off_s >= 0.0) => {
                Some(("off_s", format!("must be zero or more seconds, not {off_s}")))
            }
            Self::CheckpointBitflip { bits: 0, .. }
            | Self::LinkSlip { bits: 0, .. }
            | Self::ImageSeu { bits: 0, .. }
            | Self::StateSeu { bits: 0, .. }
            | Self::WeightsSeu { bits: 0, .. }
            | Self::QueueSeu { bits: 0, .. } => Some(("bits", "must be at least 1".into())),
            Self::LinkBurst { bytes: 0, .. }
            | Self::LinkDrop { bytes: 0, .. }
            | Self::LinkDuplicate { bytes: 0, .. } => Some(("bytes", "must be at least 1".into())),
            Self::LinkBer { ber, .. } if ber.iter().any(|b| !(*b > 0.0 && *b < 0.5)) => {
                Some(("ber", "each bit error rate must be above 0 and below 0.5".into()))
            }
            Self::Heat { kelvin, .. } if !(kelvin.is_finite() && *kelvin != 0.0) => {
                Some(("kelvin", format!("must be a temperature step other than zero, not {kelvin}")))
            }
            Self::DeadCell { fraction, .. } if !(*fraction > 0.0 && *fraction <= 1.0) => {
                Some(("fraction", format!("must be above 0 and at most 1, not {fraction}")))
            }
            Self::LinkBer { seconds, .. } if !(seconds.is_finite() && *seconds > 0.0) => {
                Some(("seconds", format!("must be a positive number of seconds, not {seconds}")))
            }
            _ => None,
        }
    }
}

/// A checked plan.
#[derive(Debug, Clone)]
pub struct Plan {
    pub path: PathBuf,
    /// Image files or scene folders, resolved.
    pub frames: Vec<PathBuf>,
    pub speedup: f64,
    pub watchdog_timeout_s: f64,
    pub interval_s: f64,
    pub check_upsets: bool,
    pub faults: Vec<Fault>,
}

impl Plan {
    pub fn load(path: &Path) -> Result<Self, MissionError> {
        let file = MissionFile::read(path)?;
        let parsed: PlanFile = file.parse_document()?;
        let positive = |value: &Spanned<f64>, key: &str| -> Result<f64, MissionError> {
            let v = *value.get_ref();
            if v.is_finite() && v > 0.0 { Ok(v) } else { Err(at(&file, value.span(), key, "must be positive")) }
        };
        let speedup = positive(&parsed.speedup, "speedup")?;
        let watchdog_timeout_s = positive(&parsed.watchdog_timeout_s, "watchdog_timeout_s")?;
        let interval_s = positive(&parsed.interval_s, "interval_s")?;
        if parsed.frames.is_empty() {
            return Err(MissionError {
                file: path.to_path_buf(),
                position: None,
                key: Some("frames".into()),
                message: "a campaign needs at least one frame".into(),
            });
        }
        let mut frames = Vec::new();
        for (i, frame) in parsed.frames.iter().enumerate() {
            let resolved = file.resolve(frame.get_ref());
            if !resolved.exists() {
                let message = format!("`{}` does not exist", resolved.display());
                return Err(at(&file, frame.span(), &format!("frames[{i}]"), &message));
            }
            frames.push(resolved);
        }
        let mut faults = Vec::new();
        for (i, fault) in parsed.faults.iter().enumerate() {
            if let Some((field, message)) = fault.get_ref().problem() {
                return Err(at(&file, fault.span(), &format!("faults[{i}].{field}"), &message));
            }
            faults.push(fault.get_ref().clone());
        }
        Ok(Self {
            path: path.to_path_buf(),
            frames,
            speedup,
            watchdog_timeout_s,
            interval_s,
            check_upsets: parsed.check_upsets,
            faults,
        })
    }
}

fn at(file: &MissionFile, span: Range<usize>, key: &str, message: &str) -> MissionError {
    file.error_at(span, key, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Plan, MissionError> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("frame.png"), b"x").expect("frame");
        let path = dir.path().join("plan.toml");
        std::fs::write(&path, text).expect("plan");
        Plan::load(&path)
    }

    #[test]
    fn a_plan_reads_its_faults_and_resolves_its_frames() {
        let plan = load(
            "frames = [\"frame.png\"]\n[[faults]]\nkind = \"sigkill\"\ncount = 3\n\
             [[faults]]\nkind = \"link_ber\"\nber = [1e-6, 1e-3]\nseconds = 2.0\n",
        )
        .expect("a good plan");
        assert_eq!(
            plan.faults,
            vec![Fault::Sigkill { count: 3 }, Fault::LinkBer { ber: vec![1e-6, 1e-3], seconds: 2.0 }]
        );
        assert!(plan.frames[0].ends_with("frame.png"));
        assert_eq!((plan.speedup, plan.watchdog_timeout_s), (100.0, 3.0));
    }

    #[test]
    fn bad_plans_name_the_line_and_key() {
        let cases = [
            ("frames = [\"frame.png\"]\n[[faults]]\nkind = \"sigkill\"\ncount = 0\n", "2:1: key `faults[0].count`"),
            ("frames = [\"nope.png\"]\nfaults = []\n", "1:11: key `frames[0]`"),
            ("frames = [\"frame.png\"]\n[[faults]]\nkind = \"gamma_ray\"\ncount = 1\n", "gamma_ray"),
            (
                "frames = [\"frame.png\"]\n[[faults]]\nkind = \"link_ber\"\nber = [0.7]\nseconds = 1.0\n",
                "`faults[0].ber`",
            ),
            ("frames = [\"frame.png\"]\nspeedup = -1.0\nfaults = []\n", "2:11: key `speedup`"),
        ];
        for (text, expected) in cases {
            let error = load(text).expect_err("refused").to_string();
            assert!(error.contains(expected), "`{error}` does not contain `{expected}`");
        }
    }
}
