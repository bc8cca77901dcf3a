//! A campaign: the plan's frames flown once undisturbed (the reference), then again through the
//! real binaries while the plan's faults are injected one at a time, then drained; each injection
//! classified as NVBitFI classifies, and the ground archive compared with the reference.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kestrel_link::noise::Rng;

use crate::inject;
use crate::plan::{Fault, Plan};
use crate::proxy::{LinkFault, Proxy};
use crate::report::{Injection, Invariants, Outcome, Report};
use crate::stations::{GroundStation, MissionCopy, binary, spool_frame};
use crate::supervisor::{Happening, SIGCONT, SIGKILL, SIGSTOP, Supervisor};

/// How long the final drain may take before the run counts as hung.
const DRAIN_LIMIT: Duration = Duration::from_secs(600);
/// Products that come from frames (the rest, events and housekeeping, differ with the faults).
const FRAME_KINDS: [&str; 3] = ["Detections", "Chip", "Thumbnail"];

/// One fault to inject, drawn from the plan.
#[derive(Debug, Clone)]
enum Shot {
    Sigkill,
    Hang(f64),
    PowerCycle(f64),
    CheckpointBitflip(u32),
    CheckpointTruncate,
    MemorySeu,
    /// Upsets aimed at a region flight's fault map names ("image", "state", "weights", "queue"),
    /// `bits` of them.
    AimedSeu(&'static str, u32),
    LinkBer(f64, f64),
    Link(&'static str, LinkFault),
    /// A line for flight's simulated plant (`heat NODE KELVIN`, `discharge FRACTION`).
    Plant(&'static str, String),
}

impl Shot {
    fn kind(&self) -> &'static str {
        match self {
            Self::Sigkill => "sigkill",
            Self::Hang(_) => "hang",
            Self::PowerCycle(_) => "power_cycle",
            Self::CheckpointBitflip(_) => "checkpoint_bitflip",
            Self::CheckpointTruncate => "checkpoint_truncate",
            Self::MemorySeu => "memory_seu",
            Self::AimedSeu("image", _) => "image_seu",
            Self::AimedSeu("weights", _) => "weights_seu",
            Self::AimedSeu("queue", _) => "queue_seu",
            Self::AimedSeu(_, _) => "state_seu",
            Self::LinkBer(..) => "link_ber",
            Self::Link(kind, _) | Self::Plant(kind, _) => kind,
        }
    }
}

fn shots(plan: &Plan, rng: &mut Rng) -> Vec<Shot> {
    let mut shots = Vec::new();
    for fault in &plan.faults {
        let count = fault.injections() as usize;
        match fault {
            Fault::Sigkill { .. } => shots.extend(std::iter::repeat_n(Shot::Sigkill, count)),
            Fault::Hang { hang_s, .. } => shots.extend(std::iter::repeat_n(Shot::Hang(*hang_s), count)),
            Fault::PowerCycle { off_s, .. } => shots.extend(std::iter::repeat_n(Shot::PowerCycle(*off_s), count)),
            Fault::CheckpointBitflip { bits, .. } => {
                shots.extend(std::iter::repeat_n(Shot::CheckpointBitflip(*bits), count));
            }
            Fault::CheckpointTruncate { .. } => shots.extend(std::iter::repeat_n(Shot::CheckpointTruncate, count)),
            Fault::MemorySeu { .. } => shots.extend(std::iter::repeat_n(Shot::MemorySeu, count)),
            Fault::ImageSeu { bits, .. } => shots.extend(std::iter::repeat_n(Shot::AimedSeu("image", *bits), count)),
            Fault::StateSeu { bits, .. } => shots.extend(std::iter::repeat_n(Shot::AimedSeu("state", *bits), count)),
            Fault::WeightsSeu { bits, .. } => {
                shots.extend(std::iter::repeat_n(Shot::AimedSeu("weights", *bits), count));
            }
            Fault::QueueSeu { bits, .. } => shots.extend(std::iter::repeat_n(Shot::AimedSeu("queue", *bits), count)),
            Fault::LinkBer { ber, seconds } => shots.extend(ber.iter().map(|b| Shot::LinkBer(*b, *seconds))),
            Fault::LinkBurst { bytes, .. } => {
                shots.extend(std::iter::repeat_n(
                    Shot::Link(fault.name(), LinkFault::Burst { bytes: *bytes as usize }),
                    count,
                ));
            }
            Fault::LinkDrop { bytes, .. } => {
                shots.extend(std::iter::repeat_n(
                    Shot::Link(fault.name(), LinkFault::Drop { bytes: *bytes as usize }),
                    count,
                ));
            }
            Fault::LinkDuplicate { bytes, .. } => {
                let duplicate = LinkFault::Duplicate { bytes: *bytes as usize };
                shots.extend(std::iter::repeat_n(Shot::Link(fault.name(), duplicate), count));
            }
            Fault::Heat { node, kelvin, .. } => {
                shots.extend(std::iter::repeat_n(Shot::Plant(fault.name(), format!("heat {node} {kelvin}")), count));
            }
            Fault::DeadCell { fraction, .. } => {
                shots.extend(std::iter::repeat_n(Shot::Plant(fault.name(), format!("discharge {fraction}")), count));
            }
            Fault::LinkSlip { bits, .. } => {
                shots.extend(std::iter::repeat_n(Shot::Link(fault.name(), LinkFault::Slip { bits: *bits }), count));
            }
        }
    }
    // Fisher-Yates, seeded: the order of the faults is part of the campaign's reproducibility
    for i in (1..shots.len()).rev() {
        shots.swap(i, rng.below(i as u64 + 1) as usize);
    }
    shots
}

/// One run of the real binaries over the plan's frames.
struct Run {
    mission: MissionCopy,
    ground: GroundStation,
    proxy: Option<Proxy>,
}

impl Run {
    fn start(mission: &Path, work: &Path, name: &str, plan: &Plan, proxy_seed: Option<u64>) -> Result<Self, String> {
        let mut copy = MissionCopy::new(mission, work, name, plan)?;
        let ground = GroundStation::start(&copy.path)?;
        let proxy = match proxy_seed {
            Some(seed) => {
                let ground_address = ground.cadu.parse().map_err(|e| format!("ground address: {e}"))?;
                Some(Proxy::start(ground_address, seed).map_err(|e| format!("link proxy: {e}"))?)
            }
            None => None,
        };
        let radio = proxy.as_ref().map_or(ground.cadu.clone(), |p| p.address.to_string());
        copy.point_flight_at(&radio)?;
        Ok(Self { mission: copy, ground, proxy })
    }

    fn flight(&self, plan: &Plan, until_drained: bool) -> Result<Supervisor, String> {
        let mut args = vec!["--log-format".to_owned(), "json".to_owned(), "run".to_owned(), "--mission".to_owned()];
        args.push(self.mission.path.display().to_string());
        args.extend(["--speedup".to_owned(), plan.speedup.to_string()]);
        if until_drained {
            args.push("--until-drained".to_owned());
        }
        let dir = self.mission.state_dir().parent().map(Path::to_path_buf).unwrap_or_default();
        std::fs::create_dir_all(&dir).map_err(|e| format!("`{}`: {e}", dir.display()))?;
        let watchdog = Duration::from_secs_f64(plan.watchdog_timeout_s);
        Supervisor::start(binary("flight")?, args, dir, watchdog).map_err(|e| format!("supervisor: {e}"))
    }

    /// Runs flight until everything is processed and acknowledged.
    fn drain(&self, plan: &Plan) -> Result<bool, String> {
        let flight = self.flight(plan, true)?;
        let started = Instant::now();
        let finished = flight.wait_finished(DRAIN_LIMIT);
        if !finished {
            let log = flight.log_since(started);
            let tail = log.iter().rev().take(5).rev().cloned().collect::<Vec<_>>().join("\n");
            tracing::error!("flight did not drain in {} s; its last words:\n{tail}", DRAIN_LIMIT.as_secs());
        }
        flight.stop();
        Ok(finished)
    }

    fn frame_products(&self) -> Result<BTreeMap<u64, (String, u32)>, String> {
        let mut products = self.ground.products()?;
        products.retain(|_, (kind, _)| FRAME_KINDS.contains(&kind.as_str()));
        Ok(products)
    }

    fn checkpoint_file(&self) -> PathBuf {
        self.mission.state_dir().join("checkpoint/db")
    }
}

/// Runs the campaign; the report says whether the invariants held.
pub fn run(mission: &Path, plan: &Plan, seed: u64, work: &Path) -> Result<Report, String> {
    let started = Instant::now();
    // flight and ground run in folders of their own: they need the mission's full path
    let mission = &std::fs::canonicalize(mission).map_err(|e| format!("`{}`: {e}", mission.display()))?;
    std::fs::create_dir_all(work).map_err(|e| format!("`{}`: {e}", work.display()))?;
    let work = &std::fs::canonicalize(work).map_err(|e| format!("`{}`: {e}", work.display()))?;
    tracing::info!(frames = plan.frames.len(), "reference run");
    let reference = Run::start(mission, work, "reference", plan, None)?;
    for (i, frame) in plan.frames.iter().enumerate() {
        spool_frame(&reference.mission.spool_dir(), frame, i)?;
    }
    if !reference.drain(plan)? {
        return Err("the undisturbed reference run did not finish: nothing to compare with".into());
    }
    let expected = reference.frame_products()?;
    drop(reference);

    let mut rng = Rng::new(seed);
    let shots = shots(plan, &mut rng);
    tracing::info!(injections = shots.len(), "campaign run");
    let run = Run::start(mission, work, "campaign", plan, Some(seed))?;
    let flight = run.flight(plan, false)?;
    let mut injections = Vec::new();
    let mut next_frame = 0;
    for (i, shot) in shots.iter().enumerate() {
        // frames arrive through the campaign, as a camera would hand them over
        while next_frame < plan.frames.len() && next_frame * shots.len() <= i * plan.frames.len() {
            spool_frame(&run.mission.spool_dir(), &plan.frames[next_frame], next_frame)?;
            next_frame += 1;
        }
        injections.push(inject_one(&run, &flight, plan, shot, &mut rng, started));
    }
    for (i, frame) in plan.frames.iter().enumerate().skip(next_frame) {
        spool_frame(&run.mission.spool_dir(), frame, i)?;
    }
    let happenings = flight.stop();
    if let Some(proxy) = &run.proxy {
        proxy.state.set_ber(0.0);
    }
    let drained = run.drain(plan)?;
    let archived = run.frame_products()?;
    let (rejected, conflicts) = run.ground.rejections()?;
    let invariants = Invariants::compare(&expected, &archived, drained, rejected, conflicts);
    if invariants.corrupt_accepted > 0 {
        // a bit flip that showed nothing at the time may be the one that corrupted a product
        for injection in &mut injections {
            if injection.kind.ends_with("_seu") && injection.outcome == Outcome::Masked {
                injection.outcome = Outcome::MaskedOrSilent;
            }
        }
    }
    let restarts = happenings.iter().filter(|(_, h)| matches!(h, Happening::Started { .. })).count();
    Ok(Report::new(plan, seed, injections, invariants, restarts, started.elapsed()))
}

/// Injects one fault and watches what follows for the plan's interval.
fn inject_one(run: &Run, flight: &Supervisor, plan: &Plan, shot: &Shot, rng: &mut Rng, t0: Instant) -> Injection {
    let interval = Duration::from_secs_f64(plan.interval_s);
    // let the process get going (a fault into a process not yet started injects nothing)
    let deadline = Instant::now() + Duration::from_secs(30);
    while flight.pid().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    // a random instant, except for aimed upsets: those wait for their target
    if !matches!(shot, Shot::AimedSeu(..)) {
        std::thread::sleep(Duration::from_millis(rng.below((interval.as_millis() as u64 / 2).max(1))));
    }
    let at = Instant::now();
    let detail = match shot {
        Shot::Sigkill => flight.signal(SIGKILL, true).map(|pid| format!("SIGKILL to {pid}")).ok_or("no process"),
        Shot::Hang(seconds) => match flight.signal(SIGSTOP, false) {
            Some(pid) => {
                std::thread::sleep(Duration::from_secs_f64(*seconds));
                send_cont_if_same(flight, pid);
                Ok(format!("SIGSTOP to {pid} for {seconds} s"))
            }
            None => Err("no process"),
        },
        Shot::PowerCycle(off_s) => {
            flight.power_off();
            std::thread::sleep(Duration::from_secs_f64(*off_s));
            flight.power_on();
            Ok(format!("power off {off_s} s"))
        }
        Shot::CheckpointBitflip(bits) => {
            checkpoint_surgery(run, flight, |file| inject::flip_file_bits(file, *bits, rng))
        }
        Shot::CheckpointTruncate => checkpoint_surgery(run, flight, |file| inject::truncate_file(file, rng)),
        Shot::MemorySeu => match flight.pid() {
            Some(pid) => inject::memory_seu(pid, rng).map_err(|e| {
                tracing::warn!("memory SEU not injected: {e}");
                "not injected"
            }),
            None => Err("no process"),
        },
        Shot::AimedSeu(region, bits) => aimed_at(run, flight, region, *bits, rng),
        Shot::LinkBer(ber, seconds) => match &run.proxy {
            Some(proxy) => {
                let before = proxy.state.bits_flipped.load(std::sync::atomic::Ordering::Relaxed);
                proxy.state.set_ber(*ber);
                std::thread::sleep(Duration::from_secs_f64(*seconds));
                proxy.state.set_ber(0.0);
                let flipped = proxy.state.bits_flipped.load(std::sync::atomic::Ordering::Relaxed) - before;
                Ok(format!("BER {ber:e} for {seconds} s: {flipped} bits flipped"))
            }
            None => Err("no link proxy"),
        },
        Shot::Plant(_, line) => {
            let path = run.mission.state_dir().join("plant-faults");
            std::fs::write(&path, format!("{line}\n")).map(|()| line.clone()).map_err(|e| {
                tracing::warn!("plant fault not injected: {e}");
                "cannot write the plant faults file"
            })
        }
        Shot::Link(_, fault) => match &run.proxy {
            Some(proxy) => {
                proxy.state.inject(*fault);
                Ok(format!("{fault:?}"))
            }
            None => Err("no link proxy"),
        },
    };
    std::thread::sleep(interval);
    let detail = match (shot, detail) {
        (Shot::Link(..), Ok(_)) if run.proxy.as_ref().is_some_and(|p| p.state.cancel_pending() > 0) => {
            Err("no downlink bytes passed to carry it")
        }
        (_, detail) => detail,
    };
    let (detail, outcome, evidence) = match detail {
        Ok(detail) => {
            let (outcome, evidence) = classify(shot, flight, at, &detail);
            (detail, outcome, evidence)
        }
        Err(why) => (why.to_owned(), Outcome::NotInjected, None),
    };
    Injection { kind: shot.kind().to_owned(), at_s: at.duration_since(t0).as_secs_f64(), detail, outcome, evidence }
}

/// Waits (a few seconds at most) for flight to name `region` in its fault map (a frame's image is
/// there only while one is in process), and upsets it.
fn aimed_at(run: &Run, flight: &Supervisor, region: &str, bits: u32, rng: &mut Rng) -> Result<String, &'static str> {
    let map = run.mission.state_dir().join("fault-map");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Some(pid) = flight.pid()
            && map.exists()
        {
            match inject::targeted_seu(pid, &map, region, bits, rng) {
                Ok(done) => {
                    // flight holds a batch about to be sent until told (or for a short window)
                    let _ = std::fs::write(run.mission.state_dir().join("fault-injected"), b"");
                    return Ok(done);
                }
                Err(e) => tracing::debug!("{region} upset not injected yet: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err("the region is not in memory")
}

fn send_cont_if_same(flight: &Supervisor, pid: u32) {
    if flight.pid() == Some(pid) {
        flight.signal(SIGCONT, false);
    }
}

/// Stops flight, changes its checkpoint file, starts it again.
fn checkpoint_surgery(
    run: &Run,
    flight: &Supervisor,
    change: impl FnOnce(&Path) -> Result<String, String>,
) -> Result<String, &'static str> {
    flight.power_off();
    let result = change(&run.checkpoint_file());
    flight.power_on();
    result.map_err(|e| {
        tracing::warn!("checkpoint fault not injected: {e}");
        "no checkpoint file yet"
    })
}

/// What the fault led to, from what the supervisor and the flight log saw after it, and the log
/// message that showed it, if one did.
fn classify(shot: &Shot, flight: &Supervisor, at: Instant, detail: &str) -> (Outcome, Option<String>) {
    let after: Vec<Happening> = flight.happenings().into_iter().filter(|(t, _)| *t >= at).map(|(_, h)| h).collect();
    let restarted = after.iter().any(|h| matches!(h, Happening::Started { .. }));
    let crashed = after.iter().find(|h| matches!(h, Happening::Exited { expected: false, .. }));
    let watchdog = after.contains(&Happening::WatchdogKill);
    let log = flight.log_since(at);
    let said = |needles: &[&str]| first_message(&log, needles);
    let recovered_or_not = |recovered: bool| if recovered { Outcome::DetectedRecovered } else { Outcome::Unrecovered };
    match shot {
        Shot::Sigkill | Shot::PowerCycle(_) => (recovered_or_not(restarted), None),
        Shot::Hang(_) if watchdog => (recovered_or_not(restarted), Some("the watchdog killed it".into())),
        Shot::Hang(_) => (Outcome::Masked, None),
        Shot::CheckpointBitflip(_) | Shot::CheckpointTruncate => match said(&["is corrupt"]) {
            Some(message) => (recovered_or_not(restarted), Some(message)),
            None => (Outcome::Masked, None),
        },
        Shot::MemorySeu | Shot::AimedSeu(..) if crashed.is_some() || watchdog => {
            // flight's own reason when it stopped itself (its state check), else how it ended
            let how = said(&["changed since it was committed"])
                .unwrap_or_else(|| crashed.map_or("the watchdog killed it".to_owned(), |exit| format!("{exit:?}")));
            (recovered_or_not(restarted), Some(how))
        }
        Shot::MemorySeu | Shot::AimedSeu(..) => {
            match said(&["\"ERROR\"", "changed in memory", "canary output moved"]) {
                Some(message) => (Outcome::DetectedCorrected, Some(message)),
                None => (Outcome::Masked, None),
            }
        }
        Shot::LinkBer(..) if detail.contains(": 0 bits flipped") => (Outcome::Masked, None),
        Shot::LinkBer(..) | Shot::Link(..) => (Outcome::DetectedCorrected, None),
        // the scheduler's answer to an excursion: a mode change (THROTTLED, or SAFE)
        Shot::Plant(..) => match said(&["mode Nominal -> "]) {
            Some(message) => (Outcome::DetectedCorrected, Some(message)),
            None => (Outcome::Masked, None),
        },
    }
}

/// The message of the first log line that holds one of `needles` (flight logs JSON lines).
fn first_message(log: &[String], needles: &[&str]) -> Option<String> {
    let line = log.iter().find(|l| needles.iter().any(|n| l.contains(n)))?;
    let message =
        serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v["message"].as_str().map(str::to_owned));
    Some(message.unwrap_or_else(|| line.clone()))
}

/// Where a campaign keeps its runs: `work` if given, else a folder under the system's temporary
/// directory, named for the seed.
pub fn work_dir(work: Option<&Path>, seed: u64) -> PathBuf {
    work.map_or_else(
        || std::env::temp_dir().join(format!("radiation-sim-{}-{seed}", std::process::id())),
        Path::to_path_buf,
    )
}
