//! The view of the mission file that the flight software reads: `[mission]`, `[link]`, `[flight]`.

use std::path::{Path, PathBuf};

use kestrel_link::profile::LinkProfile;
use kestrel_link::station::StationName;
use kestrel_mission::link::LinkConfig;
use kestrel_mission::{MissionError, MissionFile, MissionInfo};
use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Clone, Deserialize)]
pub struct FlightMission {
    pub mission: MissionInfo,
    pub link: LinkConfig,
    pub flight: FlightConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlightConfig {
    /// Where the camera driver hands frames over (by atomic rename).
    pub spool_dir: PathBuf,
    /// Where the checkpoint database lives.
    pub state_dir: PathBuf,
    pub inference: InferenceConfig,
    pub detector: DetectorConfig,
    /// The cloud screen; without it (or with it disabled) no tile is dropped for cloud.
    #[serde(default)]
    pub cloud_screen: Option<CloudScreenConfig>,
    pub products: ProductsConfig,
    pub downlink: DownlinkConfig,
    pub health: HealthConfig,
    pub schedule: ScheduleConfig,
}

impl FlightConfig {
    /// An operator parameter's value before any operator sets it: the mission file's, at the key
    /// the dictionary names, or the dictionary's own (a test holds both to the dictionary).
    pub fn parameter_default(&self, parameter: kestrel_dictionary::Parameter) -> f64 {
        use kestrel_dictionary::Parameter;
        match parameter {
            Parameter::HousekeepingIntervalS => *self.products.housekeeping_interval_s.get_ref(),
            Parameter::AckTimeoutS => *self.downlink.ack_timeout_s.get_ref(),
            Parameter::MaxChipsPerFrame => f64::from(self.products.max_chips_per_frame),
            Parameter::ChipSizePx => f64::from(*self.products.chip_size_px.get_ref()),
            // no mission key: the dictionary's own default
            Parameter::MaxDuty => 1.0,
        }
    }
}

/// How the scheduler keeps the spacecraft within its thermal and power limits (`schedule`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// The GPU's duty is decided for this long at a time, seconds.
    pub slot_s: Spanned<f64>,
    /// Kept between every forecast temperature and its limit, kelvin.
    pub margin_c: Spanned<f64>,
    /// Kept above the battery's minimum state of charge, as a fraction of capacity.
    pub margin_soc: Spanned<f64>,
    /// After each slot the plant is forecast idle this long, so that heat still on its way to a
    /// slow node (the battery) is seen before it arrives, seconds.
    pub lookahead_s: Spanned<f64>,
    /// A frame's tiles are due by the first pass that begins at least this long after capture
    /// (time to make and queue its products), seconds.
    pub deadline_lead_s: Spanned<f64>,
    /// What a tile still waiting at its frame's deadline gets.
    pub late_tiles: LateTiles,
}

/// What a tile still waiting for detection at its frame's deadline gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LateTiles {
    /// Detection still, when the GPU has time; its products go down a pass later.
    Detect,
    /// The cheap screen only (counted, thumbnailed): the GPU's time goes to fresher frames.
    Screen,
}

/// What the pipeline makes of each frame, and how often it reports on itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductsConfig {
    /// Side of the image chip cut around each detection, pixels.
    pub chip_size_px: Spanned<u32>,
    /// Chips made per frame at most (the best-scoring detections get them).
    pub max_chips_per_frame: u32,
    /// Longer side of a frame's thumbnail, pixels.
    pub thumbnail_max_px: Spanned<u32>,
    /// Housekeeping telemetry period, seconds of mission time.
    pub housekeeping_interval_s: Spanned<f64>,
    /// Processed frames kept on board (newest first) for full-resolution tile requests.
    pub keep_frames: usize,
}

/// Where and when products go down.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownlinkConfig {
    /// The radio: the ground station service's CADU port that a contact connects to.
    pub ground_address: String,
    /// The radio stands in for a ground station's front end: it signs on to the ground station
    /// service as this station (one of `[[ground.stations]]`) with the station's key file.
    pub station: Spanned<String>,
    pub station_key_file: Spanned<PathBuf>,
    /// When contacts happen.
    pub contacts: Contacts,
    /// A product sent and not acknowledged within this time is sent again, seconds.
    pub ack_timeout_s: Spanned<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Contacts {
    /// Passes over the `[thermal]` ground stations, predicted from the TLE.
    Predicted,
    /// Always in contact (a bench with the ground station wired in): budget per minute.
    Continuous,
}

/// The watchdog and restart limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// The process must show life this often (systemd WatchdogSec should match), seconds.
    pub watchdog_timeout_s: Spanned<f64>,
    /// More starts than this within `restart_window_s` puts the spacecraft in SAFE mode.
    pub max_restarts: u32,
    pub restart_window_s: Spanned<f64>,
    /// Check each frame's image buffer against its CRC before making products (an upset in
    /// between is caught, and the frame read again); off only to measure what it catches.
    #[serde(default = "checks_on")]
    pub check_upsets: bool,
}

fn checks_on() -> bool {
    true
}

/// Which model the mission runs, and how a frame's bands feed it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// The model manifest and the key that verifies its signatures.
    pub manifest: Spanned<PathBuf>,
    pub verifying_key: Spanned<PathBuf>,
    /// The manifest's name of the detector the mission runs.
    pub model: String,
    /// A scene given as a folder of band files: the files, in the model's channel order.
    pub band_files: Vec<String>,
    /// A multi-band image: its bands (0-based), in the model's channel order.
    pub bands: Vec<usize>,
    /// Each band is scaled from this low to this high quantile of the scene onto 0..1.
    pub scale_quantiles: Spanned<[f64; 2]>,
    /// Overlap between neighbouring tiles, pixels.
    pub tile_overlap: u32,
}

/// The cloud screen run on each tile before the detector: a tile clouded over more than
/// `max_cloud_fraction` is not run through the detector (counted, and in the frame's thumbnail).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudScreenConfig {
    /// Whether tiles go through the cloud screen (the section is checked either way).
    pub enabled: bool,
    /// The manifest's name of the cloud-mask model; it reads its own bands (its manifest entry's).
    pub model: String,
    /// Share of a tile's area under cloud above which the tile is dropped from detection.
    pub max_cloud_fraction: Spanned<f64>,
    /// The camera's calibration: a sample is `reflectance * reflectance_scale + reflectance_offset`.
    pub reflectance_scale: Spanned<f64>,
    pub reflectance_offset: Spanned<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceConfig {
    /// ONNX Runtime execution providers in order of preference; the first available one runs.
    pub execution_providers: Spanned<Vec<ExecutionProviderKind>>,
    /// Threads ONNX Runtime uses inside one operator; 0 lets ONNX Runtime choose.
    pub intra_threads: usize,
    /// The most tiles one run of the detector takes (the scheduler chooses up to this many); a
    /// model without a free batch axis, or whose batches differ from single tiles on the provider
    /// in use, runs one at a time.
    pub max_batch: Spanned<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProviderKind {
    Cuda,
    Cpu,
}

impl ExecutionProviderKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Cuda => "cuda",
            Self::Cpu => "cpu",
        }
    }
}

/// The largest `flight.inference.max_batch`: more tiles per run gain nothing on a CPU, and each
/// takes its share of memory (a few MB per tile of 256 px).
pub const MAX_BATCH: usize = 64;

/// A mission file read and checked for flight: every mistake found here, not in orbit.
#[derive(Debug, Clone)]
pub struct LoadedFlightMission {
    pub file: MissionFile,
    pub config: FlightMission,
    /// The `[link]` section made ready to use, key loaded.
    pub link: LinkProfile,
    /// The station the radio signs on as, and its key.
    pub station: (StationName, [u8; 32]),
}

impl LoadedFlightMission {
    pub fn load(path: &Path) -> Result<Self, MissionError> {
        let file = MissionFile::read(path)?;
        let config: FlightMission = file.parse()?;
        let link = config.link.profile(&file)?;
        let downlink = &config.flight.downlink;
        let station = StationName::new(downlink.station.get_ref())
            .map_err(|e| file.error_at(downlink.station.span(), "flight.downlink.station", e.to_string()))?;
        let station = (station, file.key_file("flight.downlink.station_key_file", &downlink.station_key_file)?);
        let providers = &config.flight.inference.execution_providers;
        if providers.get_ref().is_empty() {
            return Err(file.error_at(
                providers.span(),
                "flight.inference.execution_providers",
                "needs at least one execution provider, e.g. [\"cpu\"]",
            ));
        }
        let max_batch = &config.flight.inference.max_batch;
        if !(1..=MAX_BATCH).contains(max_batch.get_ref()) {
            let message = format!("must be within 1 to {MAX_BATCH} tiles, found {}", max_batch.get_ref());
            return Err(file.error_at(max_batch.span(), "flight.inference.max_batch", message));
        }
        let detector = &config.flight.detector;
        file.existing_file("flight.detector.manifest", &detector.manifest)?;
        file.existing_file("flight.detector.verifying_key", &detector.verifying_key)?;
        let [low, high] = *detector.scale_quantiles.get_ref();
        if !(0.0 <= low && low < high && high <= 1.0) {
            let message = format!("must be two quantiles, low below high, within 0 to 1; found [{low}, {high}]");
            return Err(file.error_at(detector.scale_quantiles.span(), "flight.detector.scale_quantiles", message));
        }
        let flight = &config.flight;
        if let Some(screen) = &flight.cloud_screen {
            let (fraction, scale, offset) = (
                *screen.max_cloud_fraction.get_ref(),
                *screen.reflectance_scale.get_ref(),
                *screen.reflectance_offset.get_ref(),
            );
            for (value, key, valid, expected) in [
                (
                    &screen.max_cloud_fraction,
                    "flight.cloud_screen.max_cloud_fraction",
                    (0.0..=1.0).contains(&fraction),
                    "a fraction within 0 to 1",
                ),
                (
                    &screen.reflectance_scale,
                    "flight.cloud_screen.reflectance_scale",
                    scale.is_finite() && scale > 0.0,
                    "a positive number (samples per unit reflectance)",
                ),
                (
                    &screen.reflectance_offset,
                    "flight.cloud_screen.reflectance_offset",
                    offset.is_finite(),
                    "a number of samples",
                ),
            ] {
                if !valid {
                    let message = format!("must be {expected}, found {}", value.get_ref());
                    return Err(file.error_at(value.span(), key, message));
                }
            }
        }
        for (value, key) in [
            (&flight.products.housekeeping_interval_s, "flight.products.housekeeping_interval_s"),
            (&flight.downlink.ack_timeout_s, "flight.downlink.ack_timeout_s"),
            (&flight.health.watchdog_timeout_s, "flight.health.watchdog_timeout_s"),
            (&flight.health.restart_window_s, "flight.health.restart_window_s"),
            (&flight.schedule.slot_s, "flight.schedule.slot_s"),
            (&flight.schedule.lookahead_s, "flight.schedule.lookahead_s"),
        ] {
            let v = *value.get_ref();
            if !(v.is_finite() && v > 0.0) {
                return Err(file.error_at(
                    value.span(),
                    key,
                    format!("must be a positive number of seconds, found {v}"),
                ));
            }
        }
        for (value, key, range) in [
            (&flight.schedule.margin_c, "flight.schedule.margin_c", 0.0..=50.0),
            (&flight.schedule.margin_soc, "flight.schedule.margin_soc", 0.0..=0.5),
            (&flight.schedule.deadline_lead_s, "flight.schedule.deadline_lead_s", 0.0..=86_400.0),
        ] {
            let v = *value.get_ref();
            if !range.contains(&v) {
                let message = format!("must be within {} to {}, found {v}", range.start(), range.end());
                return Err(file.error_at(value.span(), key, message));
            }
        }
        for (value, key) in [
            (&flight.products.chip_size_px, "flight.products.chip_size_px"),
            (&flight.products.thumbnail_max_px, "flight.products.thumbnail_max_px"),
        ] {
            let v = *value.get_ref();
            if !(8..=4096).contains(&v) {
                return Err(file.error_at(value.span(), key, format!("must be within 8 to 4096 pixels, found {v}")));
            }
        }
        Ok(Self { file, config, link, station })
    }

    /// A path from the `[flight]` section, resolved against the mission file's folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.file.resolve(path)
    }
}
