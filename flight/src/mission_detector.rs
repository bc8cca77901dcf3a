//! The mission's detector, ready to run on frames as the mission describes them: the model from
//! the signed manifest, the bands that feed it (from a multi-band image, or from a scene folder of
//! band files), their per-scene scaling, and the frame's georeferencing. `flight-tools detect` and
//! `flight-tools eval` use it.

use std::path::{Path, PathBuf};

use crate::config::{DetectorConfig, ExecutionProviderKind, LoadedFlightMission};
use crate::detect::{Batching, DetectError, Detector, DetectorSpec, FrameDetection};
use crate::georef::{GeoTransform, GeorefError};
use crate::imagery::{ImageError, Raster};
use crate::model_io::{self, ModelIo};
use crate::models::{ModelError, ModelKind, VerifiedModel, load_verified};
use crate::onnx_runtime::{OnnxRuntime, RuntimeError};
use crate::resident_weights::ResidentWeights;
use crate::screen::{CloudCover, CloudScreen, CloudScreenSpec};
use crate::tile::Window;

#[derive(Debug, thiserror::Error)]
pub enum MissionDetectorError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Georef(#[from] GeorefError),
    #[error("model `{model}` takes {expected} channels; the mission feeds it {found} ({key})")]
    Channels { model: String, expected: usize, found: usize, key: &'static str },
    #[error(
        "`{0}` is a scene folder, but the model takes multi-band images only (its manifest entry states `bands`, no `band_files`)"
    )]
    NoBandFiles(PathBuf),
    #[error(
        "`{0}` is an image, but the model takes scene folders of band files only (its manifest entry states `band_files`, no `bands`)"
    )]
    NoBands(PathBuf),
    #[error("`{0}`: the thread reading it stopped")]
    Reader(PathBuf),
    #[error("cloud model `{model}` takes {found} px tiles; the detector takes {expected} (flight.cloud_screen.model)")]
    CloudInputSize { model: String, expected: u32, found: u32 },
}

#[derive(Debug)]
pub struct MissionDetector {
    detector: Detector,
    cloud_screen: Option<CloudScreen>,
    /// What a frame is read as: the detector's band files and bands, then the cloud screen's
    /// that the detector does not take.
    config: DetectorConfig,
    /// The detector's channels: the first bands of a frame.
    channels: usize,
    /// The detector's fixed input range, when it has one (else the per-scene quantiles).
    input_range: Option<(f32, f32)>,
    /// The weights of the detector (first) and the cloud screen that are in flight's memory.
    weights: Vec<ResidentWeights>,
    /// The execution provider the detector's session runs on.
    provider: ExecutionProviderKind,
}

impl MissionDetector {
    /// The mission's detector, or the manifest's model `name` instead.
    pub fn load(mission: &LoadedFlightMission, name: Option<&str>) -> Result<Self, MissionDetectorError> {
        let model = manifest_model(mission, name.unwrap_or(&mission.config.flight.detector.model))?;
        Self::with_model(mission, model)
    }

    /// The detector running `model` (verified by the caller) on its bands: the manifest entry's
    /// own when it states them, the mission's otherwise.
    pub fn with_model(mission: &LoadedFlightMission, model: VerifiedModel) -> Result<Self, MissionDetectorError> {
        check_kind(&model, ModelKind::Detector, "flight.detector.model")?;
        let max_iou = model.entry.max_iou.ok_or_else(|| ModelError::NoMaxIou { name: model.entry.name.clone() })?;
        let mut weights = Vec::new();
        let (detector_session, provider, io) = session(mission, &model, &mut weights)?;
        let mut config = inputs_of(&mission.config.flight.detector, &model);
        check_channels(&config, &model, io.input_channels)?;
        let spec = DetectorSpec {
            name: model.entry.name.clone(),
            classes: io.classes.clone(),
            input_size: io.input_size,
            bands: (0..io.input_channels).collect(),
            min_score: model.entry.min_score,
            max_iou,
            tile_overlap: config.tile_overlap,
            preprocess: io.preprocess,
            layout: io.layout,
        };
        let input_size = spec.input_size;
        let mut detector = Detector::new(detector_session, spec);
        detector.check_output()?;
        let max_batch = *mission.config.flight.inference.max_batch.get_ref();
        match detector.allow_batches(max_batch)? {
            Batching::Tiles(tiles) => tracing::info!(model = %model.entry.name, tiles, "tiles per run at most"),
            Batching::FixedInput => tracing::info!(
                model = %model.entry.name,
                "one tile per run: the model's input has no free batch axis (flight.inference.max_batch)"
            ),
            Batching::Differs { tiles, by } => tracing::warn!(
                model = %model.entry.name,
                tiles,
                relative_difference = by,
                "one tile per run: batches give other numbers than single tiles on this execution provider"
            ),
        }
        detector.set_accelerated(provider != ExecutionProviderKind::Cpu);
        let cloud_screen = mission
            .config
            .flight
            .cloud_screen
            .as_ref()
            .filter(|screen| screen.enabled)
            .map(|screen| {
                let cloud_model = manifest_model(mission, &screen.model)?;
                check_kind(&cloud_model, ModelKind::CloudMask, "flight.cloud_screen.model")?;
                let (cloud_session, _, cloud_io) = session(mission, &cloud_model, &mut weights)?;
                let cloud_inputs = inputs_of(&mission.config.flight.detector, &cloud_model);
                check_channels(&cloud_inputs, &cloud_model, cloud_io.input_channels)?;
                if cloud_io.input_size != input_size {
                    return Err(MissionDetectorError::CloudInputSize {
                        model: cloud_model.entry.name.clone(),
                        expected: input_size,
                        found: cloud_io.input_size,
                    });
                }
                // the frame is read once, with the detector's bands first and then those of the
                // cloud model's that the detector does not take
                let bands = cloud_inputs
                    .band_files
                    .iter()
                    .zip(&cloud_inputs.bands)
                    .map(|(file, &band)| frame_band(&mut config, file, band))
                    .collect();
                let spec = CloudScreenSpec {
                    name: cloud_model.entry.name.clone(),
                    input_size: cloud_io.input_size,
                    bands,
                    cloud_probability: cloud_model.entry.min_score,
                    max_cloud_fraction: *screen.max_cloud_fraction.get_ref() as f32,
                    reflectance_scale: *screen.reflectance_scale.get_ref() as f32,
                    reflectance_offset: *screen.reflectance_offset.get_ref() as f32,
                };
                Ok(CloudScreen::new(cloud_session, spec))
            })
            .transpose()?;
        let channels = io.input_channels;
        let input_range = io.preprocess.input_range;
        Ok(Self { detector, cloud_screen, config, channels, input_range, weights, provider })
    }

    /// The execution provider the detector runs on (the first of the mission's that works).
    pub fn provider(&self) -> ExecutionProviderKind {
        self.provider
    }

    pub fn spec(&self) -> &DetectorSpec {
        self.detector.spec()
    }

    /// Whether the models' weights in flight's memory are as they were read from the verified
    /// files (upsets since would change what the models find).
    pub fn weights_intact(&self) -> bool {
        self.weights.iter().all(ResidentWeights::intact)
    }

    /// Where the models' weights in flight's memory are: (address, bytes) of each tensor.
    pub fn weight_regions(&self) -> Vec<(usize, usize)> {
        self.weights.iter().flat_map(ResidentWeights::regions).collect()
    }

    /// Whether `dir` is a scene folder: it holds any of the mission's band files (reading it names
    /// those that are missing).
    pub fn is_scene_folder(&self, dir: &Path) -> bool {
        self.config.band_files.iter().any(|f| dir.join(f).is_file())
    }

    /// Reads a frame (an image file, or a folder of the mission's band files) with the model's
    /// channels in order, and its georeferencing when the files carry it.
    pub fn read_frame(&self, input: &Path) -> Result<(Raster, Option<GeoTransform>), MissionDetectorError> {
        read_frame(&self.config, input)
    }

    /// Detections in one frame (in its tiles that the cloud screen lets through).
    pub fn detect(&mut self, input: &Path) -> Result<Vec<FrameDetection>, MissionDetectorError> {
        let (raster, georef) = self.read_frame(input)?;
        let ranges = scaling(&self.config, self.channels, self.input_range, &raster);
        detect_clear_tiles(&mut self.detector, self.cloud_screen.as_mut(), &raster, &ranges, georef.as_ref())
    }

    /// What the screens before the detector make of one tile: the first step of the one frame path
    /// that `flight run` (tile by tile), `flight-tools detect` and `eval` (a frame at once) share.
    pub fn screen_tile(
        &mut self,
        raster: &Raster,
        ranges: &[(f32, f32)],
        window: Window,
    ) -> Result<TileScreen, DetectError> {
        screen_tile(&self.detector.spec().bands, self.cloud_screen.as_mut(), raster, ranges, window)
    }

    /// The cloud cover of one tile, when the mission has a cloud screen.
    pub fn cloud_cover(&mut self, raster: &Raster, window: Window) -> Result<Option<CloudCover>, DetectError> {
        self.cloud_screen.as_mut().map(|screen| screen.cover(raster, window)).transpose()
    }

    /// Detections in each frame of `inputs`, handed to `each` in order until it returns an
    /// error. The next frame is read and scaled on a thread of its own while this one runs
    /// through the model, so reading the files costs less of the detector's time.
    pub fn detect_each<E>(
        &mut self,
        inputs: &[PathBuf],
        mut each: impl FnMut(&Path, Result<Vec<FrameDetection>, MissionDetectorError>) -> Result<(), E>,
    ) -> Result<(), E> {
        let Self { detector, cloud_screen, config, channels, input_range, .. } = self;
        let (config, channels, input_range) = (&*config, *channels, *input_range);
        let prepare = move |input: &Path| {
            read_frame(config, input).map(|(raster, georef)| {
                let ranges = scaling(config, channels, input_range, &raster);
                (raster, ranges, georef)
            })
        };
        std::thread::scope(|scope| {
            let mut next = inputs.first().map(|input| scope.spawn(move || prepare(input)));
            for (i, input) in inputs.iter().enumerate() {
                let frame = match next.take().map(|reading| reading.join()) {
                    Some(Ok(frame)) => frame,
                    Some(Err(_)) | None => Err(MissionDetectorError::Reader(input.clone())),
                };
                next = inputs.get(i + 1).map(|input| scope.spawn(move || prepare(input)));
                let found = frame.and_then(|(raster, ranges, georef)| {
                    detect_clear_tiles(detector, cloud_screen.as_mut(), &raster, &ranges, georef.as_ref())
                });
                each(input, found)?;
            }
            Ok(())
        })
    }

    /// How each channel of a frame (as `read_frame` gives it) is scaled onto 0..1: the model's
    /// fixed range, or the mission's quantiles of the scene.
    pub fn scaling(&self, raster: &Raster) -> Vec<(f32, f32)> {
        scaling(&self.config, self.channels, self.input_range, raster)
    }

    /// The detector itself, for a pipeline that runs (and checkpoints) a frame tile by tile.
    pub fn detector(&mut self) -> &mut Detector {
        &mut self.detector
    }
}

/// What the screens before the detector make of a tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileScreen {
    /// Every band of the model's is flat: nothing a detector could find (`screen::carries_nothing`).
    Flat,
    /// Clouded over the mission's limit.
    Clouded,
    /// For the detector.
    Clear,
}

fn screen_tile(
    bands: &[usize],
    cloud_screen: Option<&mut CloudScreen>,
    raster: &Raster,
    ranges: &[(f32, f32)],
    window: Window,
) -> Result<TileScreen, DetectError> {
    if crate::screen::carries_nothing(raster, window, bands, ranges) {
        return Ok(TileScreen::Flat);
    }
    let clouded = match cloud_screen {
        Some(screen) => screen.cover(raster, window)?.over_limit,
        None => false,
    };
    Ok(if clouded { TileScreen::Clouded } else { TileScreen::Clear })
}

/// The detections in the tiles of a frame that the screens let through.
fn detect_clear_tiles(
    detector: &mut Detector,
    mut cloud_screen: Option<&mut CloudScreen>,
    raster: &Raster,
    ranges: &[(f32, f32)],
    georef: Option<&GeoTransform>,
) -> Result<Vec<FrameDetection>, MissionDetectorError> {
    let bands = detector.spec().bands.clone();
    let clear =
        |window| Ok(screen_tile(&bands, cloud_screen.as_deref_mut(), raster, ranges, window)? == TileScreen::Clear);
    Ok(detector.detect_where(raster, ranges, georef, clear)?)
}

fn check_kind(model: &VerifiedModel, expected: ModelKind, key: &'static str) -> Result<(), ModelError> {
    if model.entry.kind == expected {
        return Ok(());
    }
    Err(ModelError::Kind {
        name: model.entry.name.clone(),
        found: model.entry.kind.name(),
        expected: expected.name(),
        key,
    })
}

/// The model's inputs: its manifest entry's own band files and bands when it states either (one
/// left out means the model reads no frame of that kind), the mission's otherwise.
fn inputs_of(mission: &DetectorConfig, model: &VerifiedModel) -> DetectorConfig {
    let mut config = mission.clone();
    let entry = &model.entry;
    if entry.band_files.is_some() || entry.bands.is_some() {
        config.band_files = entry.band_files.clone().unwrap_or_default();
        config.bands = entry.bands.clone().unwrap_or_default();
    }
    config
}

/// The frame band that `file` (in a scene folder) or `band` (of a multi-band image) is, added
/// after the others when the frame does not have it yet.
fn frame_band(frame: &mut DetectorConfig, file: &str, band: usize) -> usize {
    let by_file = frame.band_files.iter().position(|f| f == file);
    let by_band = frame.bands.iter().position(|&b| b == band);
    match (by_file, by_band) {
        (Some(i), Some(j)) if i == j => i,
        _ => {
            frame.band_files.push(file.to_owned());
            frame.bands.push(band);
            frame.band_files.len() - 1
        }
    }
}

/// The mission (or the model's manifest entry) feeds the model as many channels as it takes, from
/// scene folders (band files), multi-band images (bands) or both.
fn check_channels(config: &DetectorConfig, model: &VerifiedModel, expected: usize) -> Result<(), MissionDetectorError> {
    let own = model.entry.band_files.is_some() || model.entry.bands.is_some();
    let keys = if own {
        ["band_files of the model's manifest entry", "bands of the model's manifest entry"]
    } else {
        ["flight.detector.band_files", "flight.detector.bands"]
    };
    let mut inputs = [(config.band_files.len(), keys[0]), (config.bands.len(), keys[1])].into_iter();
    if config.band_files.is_empty() && config.bands.is_empty() {
        return Err(MissionDetectorError::Channels {
            model: model.entry.name.clone(),
            expected,
            found: 0,
            key: keys[0],
        });
    }
    match inputs.find(|&(found, _)| found != 0 && found != expected) {
        Some((found, key)) => {
            Err(MissionDetectorError::Channels { model: model.entry.name.clone(), expected, found, key })
        }
        None => Ok(()),
    }
}

/// A session of `model` on the mission's execution providers, and the model as flight runs it
/// (its manifest entry with its export's metadata, checked against the session); its weights are
/// kept with the others when they are in flight's memory.
fn session(
    mission: &LoadedFlightMission,
    model: &VerifiedModel,
    weights: &mut Vec<ResidentWeights>,
) -> Result<(ort::session::Session, ExecutionProviderKind, ModelIo), MissionDetectorError> {
    let inference = &mission.config.flight.inference;
    let loaded =
        OnnxRuntime::get()?.session(&model.path, inference.execution_providers.get_ref(), inference.intra_threads)?;
    let io = model_io::resolve_session(model, &loaded.session)?;
    weights.extend(loaded.weights);
    Ok((loaded.session, loaded.choice.chosen, io))
}

/// Model `name` of the mission's manifest, its file's hash and signature verified.
pub fn manifest_model(mission: &LoadedFlightMission, name: &str) -> Result<VerifiedModel, ModelError> {
    let config = &mission.config.flight.detector;
    load_verified(&mission.resolve(config.manifest.get_ref()), &mission.resolve(config.verifying_key.get_ref()), name)
}

/// A frame (an image file, or a folder of the band files) with the model's channels in order,
/// and its georeferencing when the files carry it.
fn read_frame(config: &DetectorConfig, input: &Path) -> Result<(Raster, Option<GeoTransform>), MissionDetectorError> {
    if input.is_dir() {
        if config.band_files.is_empty() {
            return Err(MissionDetectorError::NoBandFiles(input.to_path_buf()));
        }
        let files: Vec<PathBuf> = config.band_files.iter().map(|f| input.join(f)).collect();
        let raster = Raster::read_bands(&files)?;
        let georef = georef_of(&files[0])?;
        return Ok((raster, georef));
    }
    if config.bands.is_empty() {
        return Err(MissionDetectorError::NoBands(input.to_path_buf()));
    }
    let raster = Raster::read(input)?;
    raster.check_bands(input, &config.bands)?;
    Ok((select_bands(&raster, &config.bands), georef_of(input)?))
}

/// The range each of the detector's `channels` of the scene is scaled from: the model's fixed one,
/// or the mission's quantiles of the scene.
fn scaling(
    config: &DetectorConfig,
    channels: usize,
    input_range: Option<(f32, f32)>,
    raster: &Raster,
) -> Vec<(f32, f32)> {
    let channels = channels.min(raster.bands);
    if let Some(range) = input_range {
        return vec![range; channels];
    }
    let [low, high] = *config.scale_quantiles.get_ref();
    (0..channels).map(|b| raster.band_range(b, low, high)).collect()
}

/// The georeferencing of a TIFF; none for other files.
fn georef_of(path: &Path) -> Result<Option<GeoTransform>, GeorefError> {
    let mut magic = [0u8; 2];
    let is_tiff = std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok()
        && (&magic == b"II" || &magic == b"MM");
    if is_tiff { GeoTransform::from_tiff(path) } else { Ok(None) }
}

/// The raster with only `bands`, in that order.
fn select_bands(raster: &Raster, bands: &[usize]) -> Raster {
    if bands.iter().copied().eq(0..raster.bands) {
        return raster.clone();
    }
    let pixels = (raster.width as usize) * (raster.height as usize);
    let mut samples = Vec::with_capacity(pixels * bands.len());
    for p in 0..pixels {
        for &b in bands {
            samples.push(raster.sample(p * raster.bands + b));
        }
    }
    Raster {
        width: raster.width,
        height: raster.height,
        bands: bands.len(),
        samples: crate::imagery::Samples::U16(samples),
    }
}
