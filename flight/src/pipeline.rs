//! `flight run`: the on-board main loop. Each turn does one small unit of work — record a frame
//! from the spool, run one tile, make a frame's products, send a batch down, take in what came up,
//! housekeeping — and checkpoints it as one transaction before the next, so the loop can be killed
//! at any instant and resume where it stopped.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kestrel_dictionary::{EventSource, Parameter};
use kestrel_link::packet::Apid;
use kestrel_link::product::{CommandReport, CommandStage, Severity};
use kestrel_link::security::ReplayGuard;
use kestrel_link::telecommand::{TcReceiver, UPLINK_REPLAY_WINDOW};
use kestrel_link::uplink::{self, Mode, Telecommand, UplinkMessage};
use kestrel_mission::cli::escape_controls;
use kestrel_thermal::config::LoadedThermalMission;
use kestrel_thermal::network::ZERO_CELSIUS_K;
use kestrel_thermal::simulate::Plant;
use serde::Serialize;

use crate::checkpoint::{
    Batch, Checkpoint, CheckpointError, Durability, FlightState, FrameRecord, FrameState, QueuedProduct, Sent,
    TileResult, read_beside, write_beside,
};
use crate::clock::Clock;
use crate::config::LoadedFlightMission;
use crate::contacts::ContactPlan;
use crate::detect::{CANARY_TOLERANCE, DetectError, canary_difference};
use crate::downlink::Session;
use crate::fault_map::PlantFault;
use crate::georef::GeoTransform;
use crate::health::{self, Systemd, Watchdog};
use crate::imagery::Raster;
use crate::mission_detector::{MissionDetector, TileScreen};
use crate::products::{self, FrameView, Sizes};
use crate::schedule::{self, Decision, ExposureTable, GpuBudget, RunCost, Scheduler};
use crate::spool::{Arrival, Spool};
use crate::tile::Window;

/// Products looked at per send.
const SEND_BATCH: usize = 64;
/// Tiles between two checks of the model's canary (a check is one more inference).
const CANARY_EVERY_TILES: u32 = 32;
/// How often an idle flight checks the model's weights (a frame's products are always made after
/// a check); an upset is then found and repaired before a frame needs the model.
const SCRUB_EVERY: Duration = Duration::from_secs(1);
/// The file beside the checkpoint that keeps the last accepted uplink sequence numbers.
const UPLINK_GUARD: &str = "uplink.guard";
/// Downlink sequence numbers reserved (durably) at a time, so that a flush is seldom needed.
const ARSN_BLOCK: u64 = 65_536;
/// The plant (thermal and power model) steps at most this long at a time, mission seconds.
const PLANT_STEP_S: f64 = 10.0;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Spool(#[from] crate::spool::SpoolError),
    #[error("orbit prediction: {0}")]
    Orbit(#[from] kestrel_thermal::orbit::OrbitError),
    #[error("{0}")]
    Other(String),
}

/// How long to run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stop {
    /// Stop after this much mission time.
    pub after_ms: Option<i64>,
    /// Stop once the spool is empty, every frame processed and every product acknowledged.
    pub when_drained: bool,
}

/// What a run did, for the operator (printed at the end of `flight run`).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub mission_time_s: f64,
    pub mode: String,
    pub model: String,
    pub frames: u64,
    pub frames_quarantined: u64,
    /// Frames dropped because their content is a frame's already on board (each with an event).
    pub frames_duplicate: u64,
    pub tiles: u64,
    pub tiles_screened: u64,
    /// Tiles that got the screen only: their frame's deadline came first (`late_tiles = "screen"`).
    pub tiles_late: u64,
    /// Tiles clouded over more than `[flight.cloud_screen]` allows: not run through the detector.
    pub tiles_clouded: u64,
    pub detections: u64,
    pub raw_bytes_captured: u64,
    pub cadu_bytes_downlinked: u64,
    pub reduction_factor: f64,
    /// Detections per megabyte (10^6 bytes) of CADUs downlinked: what the link's bytes bought (in
    /// a drained run every detection made was delivered).
    pub detections_per_downlinked_mb: f64,
    /// The payload's energy per tile run through the detector, joules: the power model's
    /// `gpu_active_w` over the wall-clock time the detector took.
    pub payload_energy_per_tile_j: f64,
    pub products_made: u64,
    pub products_acknowledged: u64,
    pub products_queued: usize,
    pub products_resent: u64,
    pub contacts: u64,
    pub commands_executed: u64,
    pub commands_refused: u64,
    pub uplink_frames_rejected: u64,
    pub faults: u64,
    pub starts: u64,
    /// Wall-clock seconds this run spent committing and flushing the checkpoint.
    pub checkpoint_s: f64,
    /// This process's runs of the detector by the tiles each took: (tiles, runs).
    pub tiles_per_run: Vec<(usize, u64)>,
    pub peak_temperatures_c: Vec<(String, f64)>,
    pub lowest_state_of_charge: f64,
}

impl Summary {
    /// The summary as an operator reads it.
    pub fn to_text(&self) -> String {
        let peaks: Vec<String> = self.peak_temperatures_c.iter().map(|(n, t)| format!("{n} {t:.1} C")).collect();
        let runs: Vec<String> =
            self.tiles_per_run.iter().rev().map(|(tiles, runs)| format!("{runs} of {tiles} tiles")).collect();
        format!(
            "flight run: {:.0} s of mission time, mode {}, running {}\n\
             frames {} ({} quarantined, {} duplicates dropped), tiles {} ({} screened out, {} late: screen only, {} clouded), detections {}\n\
             detector runs: {}\n\
             raw bytes captured {}, CADU bytes downlinked {}: reduction factor {:.1}\n\
             detections per downlinked MB {:.2}, payload energy per detected tile {:.3} J\n\
             products made {}, acknowledged {}, still queued {}, sent again {}\n\
             contacts {}, commands executed {} / refused {}, uplink frames refused {}\n\
             peak temperatures: {}\n\
             lowest state of charge {:.1}%, faults {}, starts {}",
            self.mission_time_s,
            self.mode,
            self.model,
            self.frames,
            self.frames_quarantined,
            self.frames_duplicate,
            self.tiles,
            self.tiles_screened,
            self.tiles_late,
            self.tiles_clouded,
            self.detections,
            if runs.is_empty() { "none".to_owned() } else { runs.join(", ") },
            self.raw_bytes_captured,
            self.cadu_bytes_downlinked,
            self.reduction_factor,
            self.detections_per_downlinked_mb,
            self.payload_energy_per_tile_j,
            self.products_made,
            self.products_acknowledged,
            self.products_queued,
            self.products_resent,
            self.contacts,
            self.commands_executed,
            self.commands_refused,
            self.uplink_frames_rejected,
            if peaks.is_empty() { "none yet".to_owned() } else { peaks.join(", ") },
            self.lowest_state_of_charge * 100.0,
            self.faults,
            self.starts,
        )
    }
}

/// A frame being run a few tiles at a time.
#[derive(Debug)]
struct FrameWork {
    record: FrameRecord,
    raster: Raster,
    /// The raster's CRC-32 when it was read from its file.
    raster_crc: u32,
    georef: Option<GeoTransform>,
    ranges: Vec<(f32, f32)>,
    windows: Vec<Window>,
    done: BTreeMap<u32, TileResult>,
    /// Its tiles are due by then (the first pass far enough after its capture), mission ms.
    deadline_ms: Option<i64>,
}

pub struct Pipeline {
    pub(crate) mission: LoadedFlightMission,
    pub(crate) state_dir: PathBuf,
    pub(crate) checkpoint: Checkpoint,
    spool: Spool,
    pub(crate) detector: Option<MissionDetector>,
    /// The detector's canary output when it loaded, and the tiles run since it was last checked.
    pub(crate) canary: Option<Vec<f32>>,
    tiles_since_canary: u32,
    /// Tiles in the last run of the detector (its batch).
    last_run_tiles: usize,
    /// Runs of the detector by the tiles each took, since this process started.
    runs_by_tiles: BTreeMap<usize, u64>,
    last_scrub: Instant,
    clock: Clock,
    plant: Plant,
    plant_ms: i64,
    gpu_busy: Duration,
    gpu_idle_w: f64,
    gpu_active_w: f64,
    payload: (usize, f64),
    battery_min_soc: f64,
    contacts: ContactPlan,
    session: Option<Session>,
    unreachable_contact: Option<u64>,
    retry_at: Instant,
    receiver: TcReceiver,
    uplink_refused_seen: u64,
    current: Option<FrameWork>,
    scheduler: Scheduler,
    budget: GpuBudget,
    started_ms: i64,
    systemd: Systemd,
    watchdog: Watchdog,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline").field("checkpoint", &self.checkpoint).finish_non_exhaustive()
    }
}

/// The current state to change and the batch of changes that go with it.
pub(crate) struct Change {
    pub batch: Batch,
    pub state: FlightState,
}

impl Change {
    /// Queues an event product (and logs it).
    pub fn event(&mut self, now_ms: i64, severity: Severity, source: EventSource, message: String) {
        debug_assert!(source.spec().severities.contains(&severity), "the dictionary lists {severity:?} for {source:?}");
        let source = source.name();
        match severity {
            Severity::Info => tracing::info!(source, "{message}"),
            Severity::Warning => tracing::warn!(source, "{message}"),
            Severity::Error => tracing::error!(source, "{message}"),
        }
        if severity == Severity::Error {
            self.state.counters.faults += 1;
        }
        let sequence = self.state.next_record_sequence;
        self.state.next_record_sequence += 1;
        self.state.counters.products_made += 1;
        self.batch.product(products::queued(&products::event(sequence, now_ms, severity, source, message)));
    }

    /// Queues the verification report of command `command_id` at `stage`.
    pub fn command_report(&mut self, now_ms: i64, command_id: u64, tagged_at: Option<i64>, stage: CommandStage) {
        let sequence = self.state.next_record_sequence;
        self.state.next_record_sequence += 1;
        self.state.counters.products_made += 1;
        let report = CommandReport { command_id, time_ms: now_ms, tagged_at, stage };
        self.batch.product(products::queued(&products::command_report(sequence, report)));
    }

    pub fn set_mode(&mut self, now_ms: i64, mode: Mode, why: &str) {
        if self.state.mode != mode {
            let message = format!("mode {:?} -> {:?}: {why}", self.state.mode, mode);
            self.event(now_ms, Severity::Warning, EventSource::Mode, message);
            self.state.mode = mode;
        }
    }
}

impl Pipeline {
    /// Opens the checkpoint (setting a corrupt one aside and rebuilding from the frames on
    /// board), loads the verified model, and records this start.
    pub fn start(
        mission: LoadedFlightMission,
        thermal: LoadedThermalMission,
        clock: Clock,
        durability: Durability,
    ) -> Result<Self, RunError> {
        let flight = &mission.config.flight;
        let state_dir = mission.resolve(&flight.state_dir);
        let spool = Spool::new(mission.resolve(&flight.spool_dir), &state_dir)?;
        let epoch_ms = mission.config.mission.epoch_ms();
        let now_ms = clock.now_ms();
        let mut corrupt = None;
        let checkpoint = match Checkpoint::open(&state_dir, FlightState::new(now_ms), durability) {
            Ok(checkpoint) => checkpoint,
            // one flight cannot read is set aside (kept for the ground to look at) and rebuilt
            Err(error @ (CheckpointError::Corrupt { .. } | CheckpointError::Layout { .. })) => {
                let aside = set_aside(&state_dir)?;
                let frames = return_frames_to_incoming(&state_dir, &HashSet::new())?;
                corrupt = Some(format!(
                    "{error}; set aside as `{}`; {frames} frames on board are processed again",
                    aside.display()
                ));
                Checkpoint::open(&state_dir, FlightState::new(now_ms), durability)?
            }
            Err(e) => return Err(e.into()),
        };
        // a simulated clock goes on from where the last run left it
        let clock = match clock {
            Clock::Simulated { speedup, .. } => Clock::simulated(checkpoint.state().clock_ms.max(epoch_ms), speedup),
            Clock::Real => Clock::Real,
        };
        let power = &thermal.config.thermal.power;
        let payload_name = power.payload_node.get_ref().clone();
        let nodes = &thermal.config.thermal.nodes;
        let payload_index = nodes.iter().position(|n| n.name == payload_name).unwrap_or(0);
        let payload = (payload_index, nodes.get(payload_index).map_or(80.0, |n| n.max_temperature_c));
        let mut plant = Plant::new(&thermal);
        if let Some((temperatures, soc)) = &checkpoint.state().plant {
            plant.temperatures_k.clone_from(temperatures);
            plant.soc = *soc;
        }
        // the mission's link profile always has the key (LinkConfig::profile reads it)
        let security =
            mission.link.security.clone().ok_or_else(|| {
                RunError::Other("the link section names no security key; flight run needs one".into())
            })?;
        // the anti-replay state also lives beside the checkpoint, so that a rebuilt checkpoint
        // does not run old command frames again
        let mut uplink_accepted = checkpoint.state().uplink_accepted.clone();
        let mut guard_trouble = None;
        match read_beside::<BTreeMap<u8, u64>>(&state_dir.join(UPLINK_GUARD)) {
            Ok(guard) => {
                for (vcid, arsn) in guard.unwrap_or_default() {
                    let accepted = uplink_accepted.entry(vcid).or_default();
                    *accepted = (*accepted).max(arsn);
                }
            }
            Err(e) => guard_trouble = Some(format!("{e}; the checkpoint's anti-replay state is used")),
        }
        let receiver = TcReceiver::resuming(
            security,
            u16::from(mission.link.spacecraft_id.unwrap_or(0)),
            ReplayGuard::resume(uplink_accepted.clone()).with_window(UPLINK_REPLAY_WINDOW),
        );
        let contacts =
            ContactPlan::new(flight.downlink.contacts, thermal.clone(), mission.config.link.downlink_rate_bps());
        let watchdog_timeout = Duration::from_secs_f64(*flight.health.watchdog_timeout_s.get_ref());
        let (gpu_idle_w, gpu_active_w, battery_min_soc) =
            (*power.gpu_idle_w.get_ref(), *power.gpu_active_w.get_ref(), *power.battery_min_soc.get_ref());
        let mut pipeline = Self {
            state_dir,
            checkpoint,
            spool,
            detector: None,
            canary: None,
            tiles_since_canary: 0,
            last_run_tiles: 0,
            runs_by_tiles: BTreeMap::new(),
            last_scrub: Instant::now(),
            clock,
            plant,
            plant_ms: clock.now_ms(),
            gpu_busy: Duration::ZERO,
            gpu_idle_w,
            gpu_active_w,
            payload,
            battery_min_soc,
            contacts,
            session: None,
            unreachable_contact: None,
            retry_at: Instant::now(),
            receiver,
            uplink_refused_seen: 0,
            current: None,
            scheduler: Scheduler::new(&thermal.config.thermal, &flight.schedule),
            budget: GpuBudget::new(*flight.schedule.slot_s.get_ref()),
            started_ms: clock.now_ms(),
            systemd: Systemd::from_env(watchdog_timeout),
            watchdog: Watchdog::start(watchdog_timeout.max(Duration::from_secs(5))),
            mission,
        };
        pipeline.watchdog.pet();
        pipeline.boot(corrupt.into_iter().chain(guard_trouble).collect(), uplink_accepted)?;
        pipeline.systemd.ready();
        Ok(pipeline)
    }

    /// Records this start: restart limit, model loading, anything found wrong on the way.
    fn boot(&mut self, troubles: Vec<String>, uplink_accepted: BTreeMap<u8, u64>) -> Result<(), RunError> {
        let now = self.clock.now_ms();
        let mut change = self.change();
        change.state.counters.starts += 1;
        change.state.uplink_accepted = uplink_accepted;
        // sequence numbers of the last run may have been used up to its reservation
        change.state.encoder.next_arsn = change.state.encoder.next_arsn.max(change.state.arsn_reserved_until);
        for message in troubles {
            change.event(now, Severity::Error, EventSource::Checkpoint, message);
        }
        let health = &self.mission.config.flight.health;
        let window_ms = (*health.restart_window_s.get_ref() * 1000.0) as i64;
        if health::too_many_restarts(&mut change.state, now, window_ms, health.max_restarts) {
            let why = format!(
                "{} starts within {} s (limit {})",
                change.state.recent_starts.len(),
                health.restart_window_s.get_ref(),
                health.max_restarts
            );
            change.set_mode(now, Mode::Safe, &why);
        }
        self.reload_detector(now, &mut change);
        // a frame settled on board whose record did not become durable before a crash (or was
        // in a tail the checkpoint lost) goes back to be recorded again, never away
        let recorded: HashSet<PathBuf> = self.checkpoint.frames()?.into_iter().map(|r| r.file).collect();
        let returned = return_frames_to_incoming(&self.state_dir, &recorded)?;
        if returned > 0 {
            let message = format!("{returned} frames on board had no durable record; they are recorded again");
            change.event(now, Severity::Warning, EventSource::Checkpoint, message);
        }
        self.commit(change)?;
        self.checkpoint.flush()?;
        Ok(())
    }

    /// Loads the detector (the installed model, or the manifest's), verified from its file, and
    /// takes its canary; SAFE mode if there is none to load.
    fn reload_detector(&mut self, now: i64, change: &mut Change) {
        let loaded = self.load_detector(now, change).and_then(|mut detector| {
            let canary = detector.detector().canary().map_err(|e| e.to_string())?;
            Ok((detector, canary))
        });
        match loaded {
            Ok((detector, canary)) => {
                self.detector = Some(detector);
                self.canary = Some(canary);
                self.tiles_since_canary = 0;
            }
            Err(e) => {
                self.detector = None;
                change.event(now, Severity::Error, EventSource::Detector, format!("the model does not load: {e}"));
                change.set_mode(now, Mode::Safe, "no usable model");
            }
        }
    }

    /// Whether the model in memory is still the one loaded: its weights in flight's memory as
    /// read (checked for every frame), and its canary answered as when it loaded (checked when
    /// `CANARY_EVERY_TILES` tiles have run since the last check: it also covers what ONNX Runtime
    /// keeps in memory of its own). If not, the model is reloaded from its verified file, the tile
    /// results of `frame` (when one ran on it) are dropped, and `false` says that it must run again.
    fn model_holds(&mut self, now: i64, frame: Option<u64>) -> Result<bool, RunError> {
        self.last_scrub = Instant::now();
        let Some(detector) = self.detector.as_mut() else { return Ok(true) };
        let upset = if !detector.weights_intact() {
            Some("the model's weights changed in memory since they were read (an upset)".to_owned())
        } else if self.tiles_since_canary >= CANARY_EVERY_TILES {
            self.tiles_since_canary = 0;
            let difference = match (self.canary.as_ref(), detector.detector().canary()) {
                (None, _) => 0.0,
                (Some(reference), Ok(output)) => canary_difference(reference, &output),
                (Some(_), Err(_)) => f32::INFINITY,
            };
            (difference > CANARY_TOLERANCE).then(|| {
                format!("the model's canary output moved by {difference:e} since it loaded (an upset in its weights)")
            })
        } else {
            None
        };
        let Some(upset) = upset else { return Ok(true) };
        let mut change = self.change();
        change.state.counters.upsets_detected += 1;
        if let Some(frame) = frame {
            change.batch.clear_tiles(frame);
        }
        change.event(now, Severity::Error, EventSource::Upset, format!("{upset}; reloaded from its verified file"));
        self.reload_detector(now, &mut change);
        self.commit(change)?;
        self.publish_fault_map(&[]);
        Ok(false)
    }

    pub(crate) fn change(&self) -> Change {
        Change { batch: Batch::default(), state: self.checkpoint.state().clone() }
    }

    pub(crate) fn commit(&mut self, mut change: Change) -> Result<(), RunError> {
        change.state.clock_ms = self.clock.now_ms();
        change.state.plant = Some((self.plant.temperatures_k.clone(), self.plant.soc));
        self.checkpoint.commit(&change.batch, change.state)?;
        Ok(())
    }

    /// Names the buffers an upset can be aimed at (campaigns only, see `fault_map`): the flight
    /// state always, the models' weights when they are in flight's memory, the image of the
    /// frame in process when there is one, and the products about to be sent (`sending`).
    fn publish_fault_map(&self, sending: &[QueuedProduct]) {
        if !crate::fault_map::enabled() {
            return;
        }
        let mut regions = vec![("state", self.checkpoint.state_region())];
        regions.extend(sending.iter().map(|p| ("queue", (p.envelope.as_ptr() as usize, p.envelope.len()))));
        if let Some(detector) = &self.detector {
            regions.extend(detector.weight_regions().into_iter().map(|region| ("weights", region)));
        }
        if let Some(work) = &self.current {
            regions.push(("image", work.raster.memory()));
        }
        crate::fault_map::publish(&self.state_dir, &regions);
    }

    /// Runs until `stop` says so; returns what the run did.
    pub fn run(&mut self, stop: Stop) -> Result<Summary, RunError> {
        // here the pipeline is where it stays: the state's address is final
        self.publish_fault_map(&[]);
        // draining: once every frame is processed, one last housekeeping report, then none, so
        // that the queue can empty
        let mut last_report_made = false;
        loop {
            self.watchdog.pet();
            self.systemd.alive();
            let now = self.clock.now_ms();
            self.step_plant(now)?;
            self.schedule_slot(now)?;
            self.run_time_tagged(now)?;
            let frames_done = stop.when_drained && self.frames_done();
            if !last_report_made {
                self.housekeeping(now, frames_done)?;
                last_report_made = frames_done;
            }
            let linked = self.work_on_link(now)?;
            let recorded = self.record_arrivals(now)?;
            let worked = self.work_on_frames(now)?;
            // between frames only: a frame in process has its tiles checked with it at its end
            if !worked
                && self.current.is_none()
                && self.mission.config.flight.health.check_upsets
                && self.last_scrub.elapsed() >= SCRUB_EVERY
            {
                self.model_holds(now, None)?;
            }
            let drained = frames_done && last_report_made && self.checkpoint.queue_len() == 0;
            if stop.after_ms.is_some_and(|after| now - self.started_ms >= after) || drained {
                break;
            }
            if !(linked || recorded || worked) {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if let Some(session) = self.session.take() {
            session.close();
        }
        let change = self.change();
        self.commit(change)?;
        self.checkpoint.flush()?;
        Ok(self.summary())
    }

    /// Whether the spool is empty and every frame on board processed.
    fn frames_done(&self) -> bool {
        self.current.is_none()
            && self.spool.waiting() == 0
            && self.checkpoint.frames().is_ok_and(|f| f.iter().all(|r| r.state != FrameState::Claimed))
    }

    pub fn summary(&self) -> Summary {
        let state = self.checkpoint.state();
        let c = &state.counters;
        Summary {
            mission_time_s: (self.clock.now_ms() - self.started_ms) as f64 / 1000.0,
            mode: format!("{:?}", state.mode).to_uppercase(),
            model: self.running_model(),
            frames: c.frames,
            frames_quarantined: c.frames_quarantined,
            frames_duplicate: c.frames_duplicate,
            tiles: c.tiles,
            tiles_screened: c.tiles_screened,
            tiles_late: c.tiles_late,
            tiles_clouded: c.tiles_clouded,
            detections: c.detections,
            raw_bytes_captured: c.bytes_captured,
            cadu_bytes_downlinked: c.cadu_bytes_downlinked,
            reduction_factor: c.bytes_captured as f64 / c.cadu_bytes_downlinked.max(1) as f64,
            detections_per_downlinked_mb: c.detections as f64 / (c.cadu_bytes_downlinked.max(1) as f64 / 1e6),
            payload_energy_per_tile_j: {
                let detected = c.tiles.saturating_sub(c.tiles_screened + c.tiles_late + c.tiles_clouded);
                self.gpu_active_w * (c.detector_busy_us as f64 / 1e6) / detected.max(1) as f64
            },
            products_made: c.products_made,
            products_acknowledged: c.products_acknowledged,
            products_queued: self.checkpoint.queue_len(),
            products_resent: c.products_resent,
            contacts: c.contacts,
            commands_executed: c.commands_executed,
            commands_refused: c.commands_refused,
            uplink_frames_rejected: c.uplink_frames_rejected,
            faults: c.faults,
            starts: c.starts,
            checkpoint_s: self.checkpoint.busy().as_secs_f64(),
            tiles_per_run: self.runs_by_tiles.iter().map(|(&tiles, &runs)| (tiles, runs)).collect(),
            peak_temperatures_c: state.peak_temperatures_c.clone(),
            lowest_state_of_charge: state.lowest_soc,
        }
    }

    /// Advances the thermal and power model to `now` with the GPU as busy as it was, and moves
    /// between NOMINAL and THROTTLED with hysteresis on the payload temperature and the battery.
    fn step_plant(&mut self, now: i64) -> Result<(), RunError> {
        let dt_s = (now - self.plant_ms) as f64 / 1000.0;
        if dt_s < 1.0 {
            return Ok(());
        }
        for fault in crate::fault_map::take_plant_faults(&self.state_dir) {
            tracing::warn!(?fault, "plant excursion injected");
            match fault {
                PlantFault::Heat { node, kelvin } => {
                    if let Some(i) = self.plant.network.index(&node) {
                        self.plant.temperatures_k[i] += kelvin;
                    }
                }
                PlantFault::Discharge { fraction } => self.plant.soc = (self.plant.soc - fraction).max(0.0),
            }
        }
        let busy = (self.gpu_busy.as_secs_f64() * self.clock.speedup() / dt_s).min(1.0);
        let gpu_w = self.gpu_idle_w + (self.gpu_active_w - self.gpu_idle_w) * busy;
        let mut t = self.plant_ms as f64 / 1000.0;
        let end = now as f64 / 1000.0;
        let mut sample = None;
        while t < end {
            let step = (end - t).min(PLANT_STEP_S);
            sample = Some(self.plant.step(t, step, gpu_w)?);
            t += step;
        }
        self.plant_ms = now;
        self.gpu_busy = Duration::ZERO;
        let Some(sample) = sample else { return Ok(()) };
        let names: Vec<String> = self.plant.network.nodes.iter().map(|n| n.name.clone()).collect();
        let mut change = self.change();
        let state = &mut change.state;
        if state.peak_temperatures_c.len() != names.len() {
            state.peak_temperatures_c = names.iter().map(|n| (n.clone(), f64::MIN)).collect();
        }
        for ((_, peak), t) in state.peak_temperatures_c.iter_mut().zip(&sample.temperatures_c) {
            *peak = peak.max(*t);
        }
        state.lowest_soc = state.lowest_soc.min(sample.soc);
        // the state is committed with the next unit of work
        self.checkpoint.remember(change.state)?;
        Ok(())
    }

    /// At each slot: the GPU duty the scheduler allows (capped by the operators' `max_duty`),
    /// and NOMINAL or THROTTLED from it, with hysteresis and an event when the mode changes.
    fn schedule_slot(&mut self, now: i64) -> Result<(), RunError> {
        if !self.budget.slot_due(now) {
            return Ok(());
        }
        let plant = &self.plant;
        let (t, overrun_s) = (now as f64 / 1000.0, self.budget.last_run_s());
        let span = self.scheduler.slot_s + overrun_s + self.scheduler.lookahead_s;
        let orbit = ExposureTable::along(plant, t, span)?;
        let forecast = self.scheduler.safe_duty(plant, t, overrun_s, &|t| Ok(orbit.at(t)))?;
        let duty = forecast.min(self.parameter(Parameter::MaxDuty));
        self.budget.begin_slot(now, duty);
        let (index, limit) = self.payload;
        let payload_c = plant.temperatures_k.get(index).map_or(0.0, |k| k - ZERO_CELSIUS_K);
        let mode = self.checkpoint.state().mode;
        let wanted = schedule::mode_for(mode, duty, (payload_c, limit), (plant.soc, self.battery_min_soc));
        if wanted != mode {
            let why = format!(
                "GPU duty {:.0} % (the forecast allows {:.0} %), payload {payload_c:.1} C (limit {limit}), battery {:.0} %",
                duty * 100.0,
                forecast * 100.0,
                plant.soc * 100.0
            );
            let mut change = self.change();
            change.set_mode(now, wanted, &why);
            self.commit(change)?;
        }
        Ok(())
    }

    fn run_time_tagged(&mut self, now: i64) -> Result<(), RunError> {
        if !self.checkpoint.state().time_tagged.iter().any(|(t, _, _)| *t <= now) {
            return Ok(());
        }
        let mut change = self.change();
        let (due, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut change.state.time_tagged).into_iter().partition(|(t, _, _)| *t <= now);
        change.state.time_tagged = later;
        for (at, id, command) in due {
            self.execute(id, Some(at), command, now, &mut change)?;
        }
        self.commit(change)
    }

    /// Makes a housekeeping report when one is due (or `now_anyway`).
    fn housekeeping(&mut self, now: i64, now_anyway: bool) -> Result<(), RunError> {
        if now < self.checkpoint.state().next_housekeeping_ms && !now_anyway {
            return Ok(());
        }
        let interval_ms = (self.parameter(Parameter::HousekeepingIntervalS) * 1000.0) as i64;
        let values = self.telemetry();
        let mut change = self.change();
        let sequence = change.state.next_record_sequence;
        change.state.next_record_sequence += 1;
        change.state.counters.products_made += 1;
        change.batch.product(products::queued(&products::housekeeping(sequence, now, values.clone())));
        change.state.next_housekeeping_ms = (change.state.next_housekeeping_ms + interval_ms).max(now + 1);
        self.commit(change)?;
        if let Err(e) = health::write_metrics(&self.state_dir.join("metrics.prom"), &values) {
            tracing::warn!(error = %e, "cannot write the metrics file");
        }
        Ok(())
    }

    /// Housekeeping values: temperatures, state of charge, mode, queue, link and fault counters.
    fn telemetry(&self) -> Vec<(String, f64)> {
        let state = self.checkpoint.state();
        let c = &state.counters;
        let mut values: Vec<(String, f64)> = self
            .plant
            .network
            .nodes
            .iter()
            .zip(&self.plant.temperatures_k)
            .map(|(node, k)| (format!("temperature_{}_c", node.name), k - ZERO_CELSIUS_K))
            .collect();
        let mode = match state.mode {
            Mode::Nominal => 0.0,
            Mode::Throttled => 1.0,
            Mode::Safe => 2.0,
        };
        values.extend(
            [
                ("battery_soc", self.plant.soc),
                ("mode", mode),
                ("gpu_duty", self.budget.duty()),
                ("tiles_per_run", self.last_run_tiles as f64),
                ("queue_depth", self.checkpoint.queue_len() as f64),
                ("spool_waiting", self.spool.waiting() as f64),
                ("frames", c.frames as f64),
                ("frames_quarantined", c.frames_quarantined as f64),
                ("frames_duplicate", c.frames_duplicate as f64),
                ("tiles", c.tiles as f64),
                ("tiles_screened", c.tiles_screened as f64),
                ("tiles_late", c.tiles_late as f64),
                ("tiles_clouded", c.tiles_clouded as f64),
                ("detections", c.detections as f64),
                ("products_made", c.products_made as f64),
                ("products_acknowledged", c.products_acknowledged as f64),
                ("products_resent", c.products_resent as f64),
                ("cadu_bytes_downlinked", c.cadu_bytes_downlinked as f64),
                ("contacts", c.contacts as f64),
                ("uplink_frames_rejected", c.uplink_frames_rejected as f64),
                ("commands_executed", c.commands_executed as f64),
                ("commands_refused", c.commands_refused as f64),
                ("upload_segments", c.upload_segments as f64),
                ("upload_segments_refused", c.upload_segments_refused as f64),
                ("upsets_detected", c.upsets_detected as f64),
                ("faults", c.faults as f64),
                ("starts", c.starts as f64),
            ]
            .map(|(name, value)| (name.to_owned(), value)),
        );
        values
    }

    /// A parameter operators can set by telecommand: its value set so, else its default (the
    /// mission file's, or the dictionary's own).
    pub(crate) fn parameter(&self, parameter: Parameter) -> f64 {
        let spec = parameter.spec();
        if let Some(value) = self.checkpoint.state().parameters.get(spec.name) {
            return *value;
        }
        self.mission.config.flight.parameter_default(parameter)
    }

    /// Claims and records the next frame of the spool (or one claimed before a restart).
    fn record_arrivals(&mut self, now: i64) -> Result<bool, RunError> {
        let Some(claimed) = self.spool.claim()? else { return Ok(false) };
        let arrival = match self.spool.examine(&claimed) {
            Ok(arrival) => arrival,
            Err(e) => {
                // unreadable even as bytes: out of the way under a name of its own, so that it is
                // not claimed again at the next start
                let outcome = match self.spool.quarantine_unexamined(&claimed)? {
                    Some(target) => format!("quarantined as `{}`", escape_controls(&target.to_string_lossy())),
                    None => "it could not be moved, and was removed".to_owned(),
                };
                let mut change = self.change();
                change.state.counters.frames_quarantined += 1;
                change.event(now, Severity::Warning, EventSource::Spool, format!("{e}; {outcome}"));
                self.commit(change)?;
                return Ok(true);
            }
        };
        let id = arrival.frame_id();
        match self.checkpoint.frame(id)? {
            // recorded before a restart and not yet in its place: this is that frame, resumed
            Some(record) if record.state == FrameState::Claimed && !self.state_dir.join(&record.file).exists() => {
                self.spool.settle(&arrival, &self.state_dir, &record.file)?;
            }
            // the same content again, whatever its name: dropped as the duplicate of that frame
            // (reported before it is dropped: a crash between the two reports it twice, never not at all)
            Some(record) => {
                let mut change = self.change();
                change.state.counters.frames_duplicate += 1;
                let message = format!(
                    "frame `{}` has the content of frame {id} (`{}`), {}: dropped as its duplicate",
                    escape_controls(&arrival.name),
                    escape_controls(&record.name),
                    match record.state {
                        FrameState::Claimed => "waiting to be processed",
                        FrameState::Done { .. } => "already processed",
                        FrameState::Quarantined { .. } => "already quarantined",
                    }
                );
                change.event(now, Severity::Info, EventSource::Spool, message);
                self.commit(change)?;
                self.spool.discard(&arrival)?;
            }
            None => {
                let mut change = self.change();
                change.batch.frame(frame_record(&arrival, &mut change.state));
                change.state.counters.frames += 1;
                change.state.counters.bytes_captured += arrival.bytes;
                self.commit(change)?;
                self.spool.settle(&arrival, &self.state_dir, &Spool::frame_file(&arrival))?;
            }
        }
        Ok(true)
    }

    /// One unit of detection work: load the next recorded frame, or run its next tiles (one, or
    /// as many as the GPU budget and the detector's batch allow), or make its products once every
    /// tile has run.
    fn work_on_frames(&mut self, now: i64) -> Result<bool, RunError> {
        let mode = self.checkpoint.state().mode;
        if mode == Mode::Safe || self.detector.is_none() {
            return Ok(false);
        }
        let Some(work) = self.current.as_ref() else { return self.load_next_frame(now) };
        let next = (0..work.windows.len() as u32).find(|i| !work.done.contains_key(i));
        let Some(index) = next else {
            self.finish_frame(now)?;
            return Ok(true);
        };
        let late = work.deadline_ms.is_some_and(|deadline| now >= deadline);
        let late_tiles = self.mission.config.flight.schedule.late_tiles;
        let decision = schedule::decide(mode, late, late_tiles, self.budget.allows(now));
        if decision == Decision::Defer {
            return Ok(false);
        }
        let Some(work) = self.current.as_mut() else { return Ok(false) };
        let Some(detector) = self.detector.as_mut() else { return Ok(false) };
        let cost = if detector.detector().is_accelerated() { RunCost::FullBatch } else { RunCost::PerTile };
        let most = match decision {
            Decision::Run => self.budget.tiles_allowed(detector.detector().max_batch(), cost),
            _ => 1,
        };
        let indices: Vec<u32> =
            (index..work.windows.len() as u32).filter(|i| !work.done.contains_key(i)).take(most).collect();
        let windows: Vec<Window> = indices.iter().map(|&i| work.windows[i as usize]).collect();
        let started = Instant::now();
        let results = if decision == Decision::ScreenOnly {
            Ok(vec![TileResult::Screened; windows.len()])
        } else {
            run_tiles(detector, &work.raster, &work.ranges, &windows)
        };
        let results = match results {
            Ok(results) => results,
            Err(e) => {
                let frame = work.record.id;
                self.current = None;
                let mut change = self.change();
                let tiles = indices.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
                let message = format!("frame {frame}, tiles {tiles}: {e}");
                change.event(now, Severity::Error, EventSource::Detector, message);
                change.set_mode(now, Mode::Safe, "the detector failed");
                self.commit(change)?;
                return Ok(true);
            }
        };
        self.gpu_busy += started.elapsed();
        if decision == Decision::Run {
            self.budget.spend(started.elapsed().as_secs_f64() * self.clock.speedup(), windows.len(), cost);
            *self.runs_by_tiles.entry(windows.len()).or_default() += 1;
            self.last_run_tiles = windows.len();
        }
        self.tiles_since_canary += windows.len() as u32;
        let frame = work.record.id;
        for (&index, result) in indices.iter().zip(&results) {
            work.done.insert(index, result.clone());
        }
        let mut change = self.change();
        if decision == Decision::Run {
            change.state.counters.detector_busy_us += started.elapsed().as_micros() as u64;
        }
        for (index, result) in indices.into_iter().zip(results) {
            change.state.counters.tiles += 1;
            if decision == Decision::ScreenOnly {
                change.state.counters.tiles_late += 1;
            } else if result == TileResult::Screened {
                change.state.counters.tiles_screened += 1;
            } else if result == TileResult::Clouded {
                change.state.counters.tiles_clouded += 1;
            }
            change.batch.tile(frame, index, result);
        }
        self.commit(change)?;
        Ok(true)
    }

    fn load_next_frame(&mut self, now: i64) -> Result<bool, RunError> {
        let mut claimed: Vec<FrameRecord> =
            self.checkpoint.frames()?.into_iter().filter(|r| r.state == FrameState::Claimed).collect();
        claimed.sort_by_key(|r| r.sequence);
        let Some(record) = claimed.into_iter().next() else { return Ok(false) };
        let path = self.state_dir.join(&record.file);
        let Some(detector) = self.detector.as_ref() else { return Ok(false) };
        match detector.read_frame(&path) {
            Ok((raster, georef)) => {
                let ranges = detector.scaling(&raster);
                let windows = detector.spec().clone();
                let windows =
                    crate::tile::windows(raster.width, raster.height, windows.input_size, windows.tile_overlap);
                let done = self.checkpoint.tiles(record.id)?;
                let raster_crc = raster.crc32();
                // a file's time is the capture's on a real clock; on a simulated one it is of
                // another time base, and the frame counts as captured when it is taken up
                let captured_ms = match self.clock {
                    Clock::Real => record.time_ms.min(now),
                    Clock::Simulated { .. } => now,
                };
                let lead_ms = (self.mission.config.flight.schedule.deadline_lead_s.get_ref() * 1000.0) as i64;
                let deadline_ms = self.contacts.next_start_after(captured_ms.saturating_add(lead_ms))?;
                self.current =
                    Some(FrameWork { record, raster, raster_crc, georef, ranges, windows, done, deadline_ms });
                self.publish_fault_map(&[]);
            }
            Err(e) => self.quarantine(record, &e.to_string(), now)?,
        }
        Ok(true)
    }

    fn quarantine(&mut self, mut record: FrameRecord, reason: &str, now: i64) -> Result<(), RunError> {
        let from = self.state_dir.join(&record.file);
        let name = from.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let unused = crate::spool::unused_path(&self.state_dir.join("quarantine"), &name);
        let relative = PathBuf::from("quarantine").join(unused.file_name().unwrap_or_default());
        let mut change = self.change();
        change.state.counters.frames_quarantined += 1;
        let message = format!(
            "frame `{}` ({}) is not usable: {}; quarantined",
            escape_controls(&record.name),
            record.id,
            escape_controls(reason)
        );
        change.event(now, Severity::Warning, EventSource::Ingest, message);
        record.state = FrameState::Quarantined { reason: reason.to_owned() };
        record.file.clone_from(&relative);
        change.batch.frame(record);
        self.commit(change)?;
        // the record already says quarantined: a file that cannot be moved is not worth a stop
        if from.exists() && std::fs::rename(&from, self.state_dir.join(&relative)).is_err() {
            crate::spool::remove(&from)?;
        }
        Ok(())
    }

    /// Counts an upset caught in frame `frame`'s data and sends an event saying `what` happened;
    /// `run_again` also drops its tile results, so that the frame is run again from its file.
    fn report_upset(&mut self, now: i64, frame: u64, what: &str, run_again: bool) -> Result<(), RunError> {
        let mut change = self.change();
        change.state.counters.upsets_detected += 1;
        if run_again {
            change.batch.clear_tiles(frame);
        }
        change.event(now, Severity::Warning, EventSource::Upset, format!("frame {frame}: {what}"));
        self.commit(change)
    }

    fn finish_frame(&mut self, now: i64) -> Result<(), RunError> {
        let Some(work) = self.current.take() else { return Ok(()) };
        self.publish_fault_map(&[]);
        let checks = self.mission.config.flight.health.check_upsets;
        if checks && !self.model_holds(now, Some(work.record.id))? {
            return Ok(());
        }
        if checks && work.raster.crc32() != work.raster_crc {
            // an upset in the image buffer: its tiles may have run on wrong pixels, and its
            // products would carry them; start the frame again from its file
            let what = "its image changed in memory since it was read (an upset); read again and run again";
            return self.report_upset(now, work.record.id, what, true);
        }
        // the tile results as committed (each record CRC-checked) are what the products are made
        // from; the copy in memory differing from them is an upset, counted and reported
        let done = if checks { self.checkpoint.tiles(work.record.id)? } else { work.done.clone() };
        if done != work.done {
            let what =
                "its tile results changed in memory since they were committed (an upset); the committed ones are used";
            self.report_upset(now, work.record.id, what, false)?;
        }
        let Some(detector) = self.detector.as_mut() else { return Ok(()) };
        let candidates: Vec<_> = done
            .values()
            .flat_map(|r| match r {
                TileResult::Detected(found) => found.clone(),
                TileResult::Screened | TileResult::Clouded => Vec::new(),
            })
            .collect();
        let screened = done.values().filter(|r| !matches!(r, TileResult::Detected(_))).count() as u32;
        let model = detector.spec().name.clone();
        let detections = match detector.detector().merge(candidates, work.georef.as_ref()) {
            Ok(detections) => detections,
            Err(e) => return self.quarantine(work.record, &e.to_string(), now),
        };
        // the detections carry a CRC from here until their products are encoded (and carry their own)
        let detections_crc = crate::checkpoint::crc_of(&detections);
        let frame = FrameView {
            id: work.record.id,
            time_ms: work.record.time_ms,
            raster: &work.raster,
            georef: work.georef.as_ref(),
            ranges: &work.ranges,
        };
        let sizes = Sizes {
            chip_px: self.parameter(Parameter::ChipSizePx) as u32,
            max_chips: self.parameter(Parameter::MaxChipsPerFrame) as u32,
            thumbnail_px: *self.mission.config.flight.products.thumbnail_max_px.get_ref(),
        };
        let made = products::frame_products(&frame, &model, &detections, sizes);
        let queued: Vec<_> = made.iter().map(products::queued).collect();
        if checks && crate::checkpoint::crc_of(&detections) != detections_crc {
            // an upset while the products were made: none of them is kept; the frame's committed
            // tile results make them again at its next turn
            let what = "its detections changed in memory while its products were made (an upset); made again";
            return self.report_upset(now, work.record.id, what, false);
        }
        if checks && !queued.iter().all(products::intact) {
            // queued as they are, they would be refused by the ground at every resend
            let what = "its products changed in memory before they were queued (an upset); made again";
            return self.report_upset(now, work.record.id, what, false);
        }
        let mut change = self.change();
        change.state.counters.detections += detections.len() as u64;
        change.state.counters.products_made += made.len() as u64;
        for product in queued {
            change.batch.product(product);
        }
        let mut record = work.record;
        record.state =
            FrameState::Done { tiles: work.windows.len() as u32, screened, detections: detections.len() as u32 };
        change.batch.frame(record.clone()).clear_tiles(record.id);
        let pruned = self.frames_to_prune(record.id)?;
        for old in &pruned {
            change.batch.remove_frame(old.id);
        }
        self.commit(change)?;
        tracing::info!(
            frame = record.id,
            tiles = work.windows.len(),
            detections = detections.len(),
            products = made.len(),
            "frame done"
        );
        for old in pruned {
            crate::spool::remove(&self.state_dir.join(&old.file))?;
        }
        Ok(())
    }

    /// Frames beyond the newest `keep_frames` processed ones (`just_done` counts among them).
    fn frames_to_prune(&self, just_done: u64) -> Result<Vec<FrameRecord>, RunError> {
        let mut finished: Vec<FrameRecord> = self
            .checkpoint
            .frames()?
            .into_iter()
            .filter(|r| r.id != just_done && r.state != FrameState::Claimed)
            .collect();
        finished.sort_by_key(|r| std::cmp::Reverse(r.sequence));
        let keep = self.mission.config.flight.products.keep_frames.saturating_sub(1);
        Ok(finished.into_iter().skip(keep).collect())
    }

    /// Frame files no record names: pruned just before a crash. Removed.
    /// The link: open and close contacts, take in what the ground sent, send what fits.
    fn work_on_link(&mut self, now: i64) -> Result<bool, RunError> {
        let contact = self.contacts.current(now)?;
        if let Some(session) = &self.session
            && contact.is_none_or(|c| c.id != session.contact.id)
        {
            self.take_uplink(now)?;
            if let Some(session) = self.session.take() {
                session.close();
            }
        }
        let Some(contact) = contact else { return Ok(false) };
        if let Some(session) = self.session.as_mut() {
            session.renew(contact);
        } else {
            if Instant::now() < self.retry_at {
                return Ok(false);
            }
            let state = self.checkpoint.state();
            let address = self.mission.config.flight.downlink.ground_address.clone();
            let station = &self.mission.station;
            match Session::open(
                &address,
                station,
                contact,
                &self.mission.link,
                state.encoder.clone(),
                &state.packet_counts,
            ) {
                Ok(session) => {
                    self.session = Some(session);
                    let mut change = self.change();
                    change.state.counters.contacts += u64::from(self.unreachable_contact != Some(contact.id));
                    self.unreachable_contact = Some(contact.id);
                    tracing::info!(
                        contact = contact.id,
                        budget_bytes = contact.budget_bytes,
                        "contact: connected to the ground"
                    );
                    self.commit(change)?;
                }
                Err(e) => {
                    self.retry_at = Instant::now() + Duration::from_millis(500);
                    if self.unreachable_contact != Some(contact.id) {
                        self.unreachable_contact = Some(contact.id);
                        let mut change = self.change();
                        change.state.counters.contacts += 1;
                        let message = format!("contact: cannot reach the ground at {address}: {e}; retrying");
                        change.event(now, Severity::Warning, EventSource::Downlink, message);
                        self.commit(change)?;
                    }
                    return Ok(false);
                }
            }
        }
        let took = self.take_uplink(now)?;
        let sent = self.send(now)?;
        Ok(took || sent)
    }

    /// Acknowledgements and telecommands that came up; each verified frame's effect committed
    /// with the receiver's anti-replay state.
    fn take_uplink(&mut self, now: i64) -> Result<bool, RunError> {
        let Some(session) = self.session.as_mut() else { return Ok(false) };
        let Some(bytes) = session.received() else {
            self.session = None;
            return Ok(false);
        };
        if bytes.is_empty() {
            return Ok(false);
        }
        let frames = self.receiver.push(&bytes);
        let mut change = self.change();
        let mut acknowledged = HashSet::new();
        let mut segments_refused = Vec::new();
        let mut commanded = false;
        for frame in frames {
            let accepted = change.state.uplink_accepted.entry(frame.vcid).or_default();
            *accepted = (*accepted).max(frame.arsn);
            match uplink::decode(&frame) {
                Ok(UplinkMessage::Acknowledge { product_ids }) => {
                    for id in product_ids {
                        if acknowledged.insert(id) && self.checkpoint.product(id)?.is_some() {
                            change.batch.remove_product(id);
                            change.state.counters.products_acknowledged += 1;
                        }
                    }
                }
                Ok(UplinkMessage::Command { id, command }) => {
                    commanded = true;
                    if matches!(command, Telecommand::InstallModel { .. }) {
                        // the segments that came up with it must be in the checkpoint it reads
                        self.commit(change)?;
                        change = self.change();
                    }
                    self.execute(id, None, command, now, &mut change)?;
                }
                Ok(UplinkMessage::UploadSegment { transfer, offset, bytes }) => {
                    commanded = true;
                    segments_refused.extend(self.take_segment(transfer, offset, bytes, now, &mut change));
                }
                Err(e) => {
                    change.state.counters.uplink_frames_rejected += 1;
                    change.event(
                        now,
                        Severity::Warning,
                        EventSource::Uplink,
                        format!("authenticated frame not understood: {e}"),
                    );
                }
            }
        }
        if let Some(first) = segments_refused.first() {
            let message = format!("{} upload segments refused; the first: {first}", segments_refused.len());
            change.event(now, Severity::Warning, EventSource::Upload, message);
        }
        let stats = self.receiver.stats();
        let refused =
            stats.authentication_failures + stats.replayed_frames + stats.unknown_spi + stats.other_spacecraft;
        if refused > self.uplink_refused_seen {
            let new = refused - self.uplink_refused_seen;
            self.uplink_refused_seen = refused;
            change.state.counters.uplink_frames_rejected += new;
            let message = format!(
                "uplink: {new} frames refused (totals: {} failed authentication, {} replayed, {} unknown SPI, {} other spacecraft)",
                stats.authentication_failures, stats.replayed_frames, stats.unknown_spi, stats.other_spacecraft
            );
            change.event(now, Severity::Warning, EventSource::Uplink, message);
        }
        self.commit(change)?;
        // a command must not run again after a crash, nor a segment be lost once taken;
        // acknowledgements need no flush (a product acknowledged twice is pruned once)
        if commanded {
            self.checkpoint.flush()?;
            write_beside(&self.state_dir.join(UPLINK_GUARD), &self.checkpoint.state().uplink_accepted)?;
        }
        Ok(true)
    }

    /// Sends the queue's next products that fit the contact's budget: new ones, and those sent in
    /// an earlier contact or longer ago than the acknowledgement timeout.
    fn send(&mut self, now: i64) -> Result<bool, RunError> {
        let Some(session) = self.session.as_ref() else { return Ok(false) };
        if let Err(e) = session.check() {
            let mut change = self.change();
            change.event(now, Severity::Warning, EventSource::Downlink, format!("the ground connection failed: {e}"));
            self.session = None;
            self.retry_at = Instant::now() + Duration::from_millis(500);
            self.commit(change)?;
            return Ok(true);
        }
        if !session.ready() {
            return Ok(false);
        }
        let contact = session.contact.id;
        let timeout_ms = (self.parameter(Parameter::AckTimeoutS) * 1000.0) as i64;
        let eligible = |sent: Option<&Sent>| match sent {
            None => true,
            Some(s) => s.contact != contact || now - s.at_ms >= timeout_ms,
        };
        let candidates = self.checkpoint.queued(SEND_BATCH, eligible)?;
        let mut budget = session.remaining_budget();
        let (mut chosen, mut frames) = (Vec::new(), 0);
        for product in candidates {
            let (bytes, product_frames) = session.cost(&product);
            if bytes > budget {
                break;
            }
            budget -= bytes;
            frames += product_frames;
            chosen.push(product);
        }
        if chosen.is_empty() {
            return Ok(false);
        }
        let mut change = self.change();
        let next_arsn = session.encoder_state().next_arsn;
        let reserve = next_arsn + frames + 1 > change.state.arsn_reserved_until;
        if reserve {
            change.state.arsn_reserved_until = next_arsn + frames + 1 + ARSN_BLOCK;
        }
        for product in &chosen {
            change.state.counters.products_resent += u64::from(product.sent.is_some());
            change.batch.sent(product.id, Sent { contact, at_ms: now });
        }
        self.commit(change)?;
        // durable before anything leaves: a new sequence-number reservation (a number must never
        // be used twice under one key), and the making of any event, command report or
        // housekeeping product (made again after a crash, it would differ, and the ground would
        // hold both). Frame products are made again identically, and sent marks lost in a crash
        // only mean a resend: the ground keeps one copy.
        let records = [Apid::Event, Apid::CommandReport, Apid::Housekeeping].map(Apid::value);
        let remade_differently = chosen.iter().any(|p| records.contains(&p.apid));
        if reserve || remade_differently {
            self.checkpoint.flush()?;
        }
        // the radio holds the batch while it transmits (a window the fault injector aims at; each
        // of these returns at once outside a campaign)
        self.publish_fault_map(&chosen);
        crate::fault_map::transmission_window(&self.state_dir);
        self.publish_fault_map(&[]);
        if self.mission.config.flight.health.check_upsets {
            chosen = self.drop_upset_products(now, chosen)?;
        }
        let Some(session) = self.session.as_mut() else { return Ok(false) };
        let result = session.send(&chosen);
        let (encoder, packet_counts) = (session.encoder_state().clone(), session.packet_counts());
        let mut change = self.change();
        change.state.encoder = encoder;
        change.state.packet_counts = packet_counts;
        match result {
            Ok(bytes) => change.state.counters.cadu_bytes_downlinked += bytes,
            Err(e) => {
                change.event(
                    now,
                    Severity::Warning,
                    EventSource::Downlink,
                    format!("the ground connection failed: {e}"),
                );
                self.session = None;
                self.retry_at = Instant::now() + Duration::from_millis(500);
            }
        }
        self.commit(change)?;
        Ok(true)
    }

    /// The products of `chosen` still as they were read from the queue; one that is not is kept
    /// back with an event, and sent again from the checkpoint's copy after the acknowledgement
    /// timeout. A CRC over the bytes, not a decode: the envelope was checked once, when made.
    fn drop_upset_products(&mut self, now: i64, chosen: Vec<QueuedProduct>) -> Result<Vec<QueuedProduct>, RunError> {
        let (intact, upset): (Vec<_>, Vec<_>) = chosen.into_iter().partition(QueuedProduct::unchanged_since_read);
        if !upset.is_empty() {
            let mut change = self.change();
            change.state.counters.upsets_detected += upset.len() as u64;
            let ids: Vec<String> = upset.iter().map(|p| p.id.to_string()).collect();
            let message = format!(
                "products {} changed in memory since they were read from the queue (an upset); sent again from the checkpoint",
                ids.join(", ")
            );
            change.event(now, Severity::Warning, EventSource::Upset, message);
            self.commit(change)?;
        }
        Ok(intact)
    }
}

/// Tiles through the frame path `flight-tools detect` takes too (`MissionDetector::screen_tile`,
/// then the detector, in one run, for those that are left); the frame's detections are merged
/// from them by `Detector::merge` once every tile has its result.
fn run_tiles(
    detector: &mut MissionDetector,
    raster: &Raster,
    ranges: &[(f32, f32)],
    windows: &[Window],
) -> Result<Vec<TileResult>, DetectError> {
    let mut results = Vec::with_capacity(windows.len());
    let mut to_detect = Vec::with_capacity(windows.len());
    for &window in windows {
        match detector.screen_tile(raster, ranges, window)? {
            TileScreen::Flat => results.push(Some(TileResult::Screened)),
            TileScreen::Clouded => results.push(Some(TileResult::Clouded)),
            TileScreen::Clear => {
                results.push(None);
                to_detect.push(window);
            }
        }
    }
    let mut found = detector.detector().detect_tiles(raster, ranges, &to_detect)?.into_iter();
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| TileResult::Detected(found.next().unwrap_or_default())))
        .collect())
}

fn frame_record(arrival: &Arrival, state: &mut FlightState) -> FrameRecord {
    let sequence = state.next_frame_sequence;
    state.next_frame_sequence += 1;
    FrameRecord {
        id: arrival.frame_id(),
        name: arrival.name.clone(),
        file: Spool::frame_file(arrival),
        sha256: arrival.sha256,
        time_ms: arrival.time_ms,
        bytes: arrival.bytes,
        sequence,
        state: FrameState::Claimed,
    }
}

/// Moves a corrupt checkpoint (and its seal) aside under a new name; returns where it went.
fn set_aside(state_dir: &Path) -> Result<PathBuf, RunError> {
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let aside = state_dir.join(format!("checkpoint.corrupt-{stamp}"));
    std::fs::create_dir_all(&aside).map_err(|e| RunError::Other(e.to_string()))?;
    for name in ["checkpoint", "checkpoint.seal"] {
        let from = state_dir.join(name);
        if from.exists() {
            std::fs::rename(&from, aside.join(name))
                .map_err(|e| RunError::Other(format!("{}: {e}", from.display())))?;
        }
    }
    Ok(aside)
}

/// Puts every frame kept on board that has no record among `recorded` back in `incoming/` under its
/// spool name, to be recorded again.
fn return_frames_to_incoming(state_dir: &Path, recorded: &HashSet<PathBuf>) -> Result<usize, RunError> {
    let frames = state_dir.join("frames");
    let incoming = state_dir.join("incoming");
    let Ok(entries) = std::fs::read_dir(&frames) else { return Ok(0) };
    let mut count = 0;
    for entry in entries.filter_map(Result::ok) {
        if recorded.contains(&PathBuf::from("frames").join(entry.file_name())) {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        // "<16 hex digits>-<spool name>"
        let original = name.get(17..).filter(|_| name.as_bytes().get(16) == Some(&b'-')).unwrap_or(&name);
        std::fs::create_dir_all(&incoming).map_err(|e| RunError::Other(e.to_string()))?;
        std::fs::rename(entry.path(), incoming.join(original)).map_err(|e| RunError::Other(e.to_string()))?;
        count += 1;
    }
    Ok(count)
}
