//! One simulated day of the reference mission under four scheduling policies, on the same frames:
//! always run (greedy), a fixed duty cycle, flight's scheduler (`kestrel_flight::schedule`), and
//! the offline optimum with full knowledge of the day (a linear programme). What issue 7 asks the
//! scheduler to be measured by; `cargo bench -p kestrel-e2e --bench scheduler_day` writes
//! docs/scheduler.md's figures, and tests/tests/scheduler_day.rs holds the targets.
//!
//! The work: a frame is captured every `frame_every_s` while the spacecraft is sunlit, each of
//! `tiles_per_frame` tiles costing `tile_s` seconds of GPU time; its weight (the value of detecting
//! in it: open sea, coast, port) is drawn from a seeded generator; it is due by the first pass that
//! begins at least `deadline_lead_s` after its capture. A tile counts only when it has run by its
//! deadline. Work is divisible (a slot runs a fraction of a tile), in every policy alike.

use std::fmt;
use std::path::Path;

use clarabel::algebra::CscMatrix;
use clarabel::solver::{DefaultSettingsBuilder, DefaultSolver, IPSolver, NonnegativeConeT, SolverStatus, ZeroConeT};
use kestrel_flight::schedule::{self, ExposureTable, Limits, Scheduler, Waiting};
use kestrel_thermal::config::LoadedThermalMission;
use kestrel_thermal::events;
use kestrel_thermal::network::{Exposure, ZERO_CELSIUS_K};
use kestrel_thermal::orbit::OrbitError;
use kestrel_thermal::simulate::Plant;
use plotters::prelude::*;

/// The plant's integration step, seconds.
const STEP_S: f64 = schedule::STEP_S;
/// Slots between refreshes of flight's capacity forecast.
const REFRESH_SLOTS: usize = 15;

/// The day's work.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Workload {
    pub hours: f64,
    pub frame_every_s: f64,
    pub tiles_per_frame: f64,
    pub tile_s: f64,
    pub deadline_lead_s: f64,
    pub seed: u64,
}

impl Default for Workload {
    /// A frame a minute in sunlight, 25 tiles of 3 GPU seconds each: the GPU would have to run
    /// 125 % of the sunlit time, more than the radiator can reject.
    fn default() -> Self {
        Self { hours: 24.0, frame_every_s: 60.0, tiles_per_frame: 25.0, tile_s: 4.0, deadline_lead_s: 600.0, seed: 7 }
    }
}

/// (weight, share of frames): open sea, coast, port.
const WEIGHTS: [(f64, f64); 3] = [(1.0, 0.6), (2.0, 0.3), (5.0, 0.1)];

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    pub arrival: f64,
    pub weight: f64,
    pub deadline: f64,
    pub tiles: f64,
}

/// The day: its orbit tabled once, its frames, and the scheduler under test.
#[derive(Debug)]
pub struct Day {
    pub start: f64,
    pub slot_s: f64,
    pub slots: usize,
    pub workload: Workload,
    pub frames: Vec<Frame>,
    pub passes: Vec<(f64, f64)>,
    pub eclipses: Vec<(f64, f64)>,
    orbit: ExposureTable,
    plant: Plant,
    scheduler: Scheduler,
    truth: Limits,
}

/// What one policy did over the day.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub policy: String,
    /// Σ weight × tiles run by their deadlines.
    pub value: f64,
    pub tiles_run: f64,
    /// Tiles whose deadline came first (the cheap screen only).
    pub tiles_screened_only: f64,
    /// Time spent outside any limit, seconds, and the worst excursion in words.
    pub violation_s: f64,
    pub worst: Option<String>,
    pub max_payload_c: f64,
    pub max_battery_c: f64,
    pub min_soc: f64,
    /// Energy the GPU drew, and what the battery gave, watt-hours.
    pub gpu_wh: f64,
    pub battery_wh: f64,
    /// Per slot: (minutes from the start, payload °C at its end, duty).
    pub trace: Vec<(f64, f64, f64)>,
}

/// A policy simulated against the plant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// The GPU runs whenever a tile waits, oldest first.
    Greedy,
    /// The GPU runs at most this share of each slot, oldest first.
    FixedDuty(f64),
    /// Flight's scheduler.
    Scheduler,
    /// The optimum's duties and tile choices replayed (the LP's solution).
    Replay,
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Greedy => write!(f, "always run (greedy)"),
            Self::FixedDuty(d) => write!(f, "fixed duty cycle {:.0} %", d * 100.0),
            Self::Scheduler => write!(f, "flight's scheduler"),
            Self::Replay => write!(f, "offline optimum (LP), replayed"),
        }
    }
}

/// The offline optimum, bracketed: the LP's bound (limits loosened by the linearisation's error)
/// and a schedule the real plant allows (the LP with limits tightened by as much, replayed).
#[derive(Debug, Clone, PartialEq)]
pub struct Optimum {
    pub bound: f64,
    pub replay: Outcome,
    /// Worst difference between the LP's payload temperature and the real plant's under the
    /// same duties, kelvin, after the last linearisation.
    pub model_error_k: f64,
    pub solves: usize,
}

/// Splits `seed`'s stream into values in [0, 1) (SplitMix64: the evaluation needs repeatable
/// draws, not a statistics library).
fn uniform(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as f64 / (u64::MAX as f64 + 1.0)
}

impl Day {
    pub fn new(mission: &LoadedThermalMission, scheduler: Scheduler, workload: Workload) -> Result<Self, OrbitError> {
        let plant = Plant::new(mission);
        let start = plant.orbit.epoch_unix();
        let end = start + workload.hours * 3600.0;
        let slot_s = scheduler.slot_s;
        let slots = ((end - start) / slot_s).floor() as usize;
        // the forecasts look past the day's end
        let table_end = end + 12.0 * 3600.0;
        let orbit = ExposureTable::along(&plant, start, table_end - start)?;
        let mut passes = Vec::new();
        for station in &mission.config.thermal.ground_stations {
            passes.extend(
                events::passes(&plant.orbit, station, start, table_end)?.iter().map(|p| (p.aos_unix, p.los_unix)),
            );
        }
        passes.sort_by(|a, b| a.0.total_cmp(&b.0));
        let transitions = events::eclipses(&plant.orbit, start, end)?;
        let mut eclipses = Vec::new();
        let mut entry = (orbit.at(start).illumination < 0.5).then_some(start);
        for transition in transitions {
            match (transition.sunlit, entry) {
                (true, Some(e)) => {
                    eclipses.push((e, transition.unix));
                    entry = None;
                }
                (false, None) => entry = Some(transition.unix),
                _ => {}
            }
        }
        if let Some(e) = entry {
            eclipses.push((e, end));
        }
        let mut rng = workload.seed;
        let mut frames = Vec::new();
        let mut t = start;
        while t < end {
            let sunlit = !eclipses.iter().any(|&(a, b)| a <= t && t < b);
            if sunlit {
                let draw = uniform(&mut rng);
                let mut share = 0.0;
                let weight = WEIGHTS.iter().find(|(_, s)| {
                    share += s;
                    draw < share
                });
                let deadline =
                    passes.iter().map(|p| p.0).find(|&aos| aos >= t + workload.deadline_lead_s).unwrap_or(end).min(end);
                frames.push(Frame {
                    arrival: t,
                    weight: weight.map_or(1.0, |w| w.0),
                    deadline,
                    tiles: workload.tiles_per_frame,
                });
            }
            t += workload.frame_every_s;
        }
        let truth = Limits::of(&mission.config.thermal, 0.0, 0.0);
        Ok(Self { start, slot_s, slots, workload, frames, passes, eclipses, orbit, plant, scheduler, truth })
    }

    pub fn end(&self) -> f64 {
        self.start + self.slots as f64 * self.slot_s
    }

    fn exposure(&self, t: f64) -> Result<Exposure, OrbitError> {
        Ok(self.orbit.at(t))
    }

    /// Value the day offers: every tile run by its deadline.
    pub fn value_offered(&self) -> f64 {
        self.frames.iter().map(|f| f.weight * f.tiles).sum()
    }

    /// Runs `policy` over the day. `replay` gives, for [`Policy::Replay`], the duty of each slot
    /// and the tiles of each frame it runs.
    pub fn simulate(&self, policy: Policy, replay: Option<&ReplayPlan>) -> Result<Outcome, OrbitError> {
        let exposure = |t: f64| self.exposure(t);
        let mut plant = self.plant.clone();
        let nodes = plant.load_nodes();
        let mut left: Vec<f64> = self.frames.iter().map(|f| f.tiles).collect();
        let mut outcome = Outcome {
            policy: policy.to_string(),
            value: 0.0,
            tiles_run: 0.0,
            tiles_screened_only: 0.0,
            violation_s: 0.0,
            worst: None,
            max_payload_c: f64::MIN,
            max_battery_c: f64::MIN,
            min_soc: f64::MAX,
            gpu_wh: 0.0,
            battery_wh: 0.0,
            trace: Vec::with_capacity(self.slots),
        };
        let mut worst_excess = 0.0;
        let mut capacity: Vec<(f64, f64)> = Vec::new();
        let mut refreshed = 0;
        let (mut arrived, mut closed) = (0, 0);
        for s in 0..self.slots {
            let t = self.start + s as f64 * self.slot_s;
            let slot_end = t + self.slot_s;
            while arrived < self.frames.len() && self.frames[arrived].arrival <= t {
                arrived += 1;
            }
            // a tile counts when it has run by its deadline: what cannot any more is screened only
            for (f, frame) in self.frames[..arrived].iter().enumerate().skip(closed) {
                if frame.deadline < slot_end && left[f] > 0.0 {
                    outcome.tiles_screened_only += left[f];
                    left[f] = 0.0;
                }
            }
            while closed < arrived && left[closed] <= 0.0 {
                closed += 1;
            }
            let waiting = closed..arrived;
            let run: Vec<(usize, f64)> = match policy {
                Policy::Greedy | Policy::FixedDuty(_) => {
                    let duty = if let Policy::FixedDuty(d) = policy { d } else { 1.0 };
                    let mut budget = duty * self.slot_s / self.workload.tile_s;
                    let mut run = Vec::new();
                    for f in waiting {
                        let n = left[f].min(budget);
                        if n > 0.0 {
                            run.push((f, n));
                            budget -= n;
                        }
                    }
                    run
                }
                Policy::Scheduler => {
                    let duty = self.scheduler.safe_duty(&plant, t, 0.0, &exposure)?;
                    let latest = self.frames[waiting.clone()].iter().map(|f| f.deadline).fold(t, f64::max);
                    // the capacity forecast is refreshed every quarter of an hour, and sooner when
                    // a deadline lies beyond it
                    if s >= refreshed + REFRESH_SLOTS || capacity.last().is_none_or(|c| c.0 < latest) {
                        capacity = self.scheduler.capacity(&plant, t, latest, &exposure)?;
                        capacity.insert(0, (t, 0.0));
                        refreshed = s;
                    }
                    let spent = interpolate(&capacity, t);
                    let ahead: Vec<(f64, f64)> =
                        capacity.iter().filter(|c| c.0 > t).map(|&(time, gpu_s)| (time, gpu_s - spent)).collect();
                    self.choose(&left, waiting, duty, &ahead)
                }
                Policy::Replay => {
                    let plan = replay.expect("a replay needs its plan");
                    plan.runs[s].iter().map(|&(f, n)| (f, n.min(left[f]))).collect()
                }
            };
            let mut gpu_s = 0.0;
            for &(f, n) in &run {
                left[f] -= n;
                gpu_s += n * self.workload.tile_s;
                outcome.tiles_run += n;
                outcome.value += n * self.frames[f].weight;
            }
            let duty = match (policy, replay) {
                (Policy::Replay, Some(plan)) => plan.duties[s],
                _ => (gpu_s / self.slot_s).min(1.0),
            };
            let gpu_w = plant.power.gpu_idle_w + (plant.power.gpu_active_w - plant.power.gpu_idle_w) * duty;
            let mut time = t;
            while time < slot_end - 1e-9 {
                let sample = plant.step_exposed(time, STEP_S, self.exposure(time)?, gpu_w);
                time += STEP_S;
                outcome.gpu_wh += gpu_w * STEP_S / 3600.0;
                outcome.battery_wh += (-sample.power.battery_w).max(0.0) * STEP_S / 3600.0;
                let payload = sample.temperatures_c[nodes.payload];
                outcome.max_payload_c = outcome.max_payload_c.max(payload);
                outcome.max_battery_c = outcome.max_battery_c.max(sample.temperatures_c[nodes.battery]);
                outcome.min_soc = outcome.min_soc.min(sample.soc);
                if !self.truth.hold(&sample) {
                    outcome.violation_s += STEP_S;
                    for (i, (t_c, (low, high))) in
                        sample.temperatures_c.iter().zip(&self.truth.temperatures_c).enumerate()
                    {
                        let excess = (t_c - high).max(low - t_c);
                        if excess > worst_excess {
                            worst_excess = excess;
                            let name = &plant.network.nodes[i].name;
                            outcome.worst = Some(format!("{name} {t_c:.2} °C ({excess:+.2} K past its limit)"));
                        }
                    }
                    if sample.soc < self.truth.min_soc && outcome.worst.is_none() {
                        outcome.worst = Some(format!("state of charge {:.0} %", sample.soc * 100.0));
                    }
                }
            }
            outcome.trace.push((
                (slot_end - self.start) / 60.0,
                plant.temperatures_k[nodes.payload] - ZERO_CELSIUS_K,
                duty,
            ));
        }
        Ok(outcome)
    }

    /// Flight's scheduler's choice for one slot: keep tiles by weight against the forecast
    /// capacity, spend the slot's duty on them earliest deadline first, and any duty left on the
    /// rest, heaviest first.
    fn choose(
        &self,
        left: &[f64],
        waiting: std::ops::Range<usize>,
        duty: f64,
        ahead: &[(f64, f64)],
    ) -> Vec<(usize, f64)> {
        // frames that share a weight and a deadline are one group to the scheduler
        let mut groups: Vec<Waiting> = Vec::new();
        let mut members: Vec<Vec<usize>> = Vec::new();
        for f in waiting.filter(|&f| left[f] > 0.0) {
            let frame = &self.frames[f];
            match groups.iter().position(|g| g.weight == frame.weight && g.deadline == frame.deadline) {
                Some(g) => {
                    groups[g].tiles += left[f];
                    members[g].push(f);
                }
                None => {
                    groups.push(Waiting { weight: frame.weight, deadline: frame.deadline, tiles: left[f] });
                    members.push(vec![f]);
                }
            }
        }
        let budget = duty * self.slot_s / self.workload.tile_s;
        let kept = schedule::keep(&groups, ahead, self.workload.tile_s);
        let mut per_group = schedule::spend(&groups, &kept, budget);
        let mut rest = budget - per_group.iter().sum::<f64>();
        let mut by_weight: Vec<usize> = (0..groups.len()).collect();
        by_weight.sort_by(|&a, &b| groups[b].weight.total_cmp(&groups[a].weight));
        for g in by_weight {
            let more = (groups[g].tiles - per_group[g]).min(rest).max(0.0);
            per_group[g] += more;
            rest -= more;
        }
        let mut run = Vec::new();
        for (g, mut n) in per_group.into_iter().enumerate() {
            for &f in &members[g] {
                let take = left[f].min(n);
                if take > 0.0 {
                    run.push((f, take));
                    n -= take;
                }
            }
        }
        run
    }

    /// The largest fixed duty cycle (in steps of 5 %) that keeps every limit over the day: the
    /// fixed-duty policy tuned with hindsight, the strongest form of that baseline.
    pub fn best_fixed_duty(&self) -> Result<Outcome, OrbitError> {
        let mut last = None;
        for step in (1..=20).rev() {
            let outcome = self.simulate(Policy::FixedDuty(f64::from(step) * 0.05), None)?;
            if outcome.violation_s == 0.0 {
                return Ok(outcome);
            }
            last = Some(outcome);
        }
        Ok(last.expect("twenty duties were tried"))
    }

    /// The offline optimum: a linear programme over the whole day with every frame known in
    /// advance, the thermal network linearised about a reference trajectory (radiation's tangent
    /// at the reference temperature), solved again about its own replay until the two agree.
    pub fn optimum(&self, reference: &Outcome) -> Result<Optimum, String> {
        let payload = self.plant.load_nodes().payload;
        let mut along = self.trajectory(&reference_duties(reference))?;
        let mut solves = 0;
        let mut model_error_k = f64::INFINITY;
        while solves < 4 && model_error_k > 0.05 {
            let solution = self.solve_lp(&along, Shift { kelvin: 0.0, soc: 0.0 })?;
            solves += 1;
            let replayed = self.trajectory(&solution.plan.duties)?;
            model_error_k = solution
                .payload_c
                .iter()
                .zip(&replayed.temperatures_k)
                .map(|(lp, temperatures)| (lp - (temperatures[payload] - ZERO_CELSIUS_K)).abs())
                .fold(0.0, f64::max);
            along = replayed;
        }
        // the bound: limits loosened by the linearisation's error, so that no schedule the real
        // plant allows is outside the LP; the replayed optimum: limits tightened by as much (and
        // the state of charge by a little, for the slot-mean sunlight), so that it is a schedule
        // the real plant allows
        let bound = self.solve_lp(&along, Shift { kelvin: model_error_k, soc: 0.0 })?.value;
        let feasible = self.solve_lp(&along, Shift { kelvin: -(model_error_k + 0.05), soc: -0.02 })?;
        let replay = self.simulate(Policy::Replay, Some(&feasible.plan)).map_err(|e| e.to_string())?;
        Ok(Optimum { bound, replay, model_error_k, solves: solves + 2 })
    }

    /// The array's mean output over slot `s`, W.
    fn array_w(&self, s: usize) -> Result<f64, String> {
        let t = self.start + s as f64 * self.slot_s;
        let steps = (self.slot_s / STEP_S).round() as usize;
        let mut sum = 0.0;
        for k in 0..steps {
            sum += self.exposure(t + k as f64 * STEP_S).map_err(|e| e.to_string())?.illumination;
        }
        Ok(self.plant.power.array_w_full_sun() * sum / steps as f64)
    }

    /// Node temperatures (kelvin) at every slot boundary with the GPU at `duties`.
    fn trajectory(&self, duties: &[f64]) -> Result<Trajectory, String> {
        let mut plant = self.plant.clone();
        let mut out = Trajectory { temperatures_k: vec![plant.temperatures_k.clone()] };
        for (s, &duty) in duties.iter().enumerate() {
            let t = self.start + s as f64 * self.slot_s;
            self.scheduler.run_slot(&mut plant, t, duty, &|t| self.exposure(t)).map_err(|e| e.to_string())?;
            out.temperatures_k.push(plant.temperatures_k.clone());
        }
        Ok(out)
    }

    /// One linear programme. Variables: the duty of each slot, every node's temperature at
    /// every slot boundary, and for each group of frames (one weight, one deadline) the tiles
    /// it runs in each slot and their running total (which may not pass the group's arrivals).
    /// The network steps by the trapezoidal rule; radiation is its tangent along `along`. The
    /// battery: its charge, what it takes in and gives out each slot (the array's surplus over
    /// the loads bounds the difference; the charging loss heats the battery node) — a relaxation
    /// of the plant's battery, which never does both at once. The upper temperature limits and
    /// the lowest state of charge are moved by `shift`.
    fn solve_lp(&self, along: &Trajectory, shift: Shift) -> Result<LpSolution, String> {
        let reference_k = &along.temperatures_k;
        let network = &self.plant.network;
        let power = &self.plant.power;
        let loads = self.plant.load_nodes();
        let nodes = network.nodes.len();
        let slots = self.slots;
        let dt = self.slot_s;
        // groups of frames with one weight and one deadline
        let mut groups: Vec<(f64, f64, Vec<usize>)> = Vec::new();
        for (f, frame) in self.frames.iter().enumerate() {
            match groups.iter_mut().find(|g| g.0 == frame.weight && g.1 == frame.deadline) {
                Some(g) => g.2.push(f),
                None => groups.push((frame.weight, frame.deadline, vec![f])),
            }
        }
        let mut n_vars = 0;
        let mut var = |count: usize| {
            let first = n_vars;
            n_vars += count;
            first
        };
        let u0 = var(slots);
        let temperature0 = var(nodes * (slots + 1));
        let temperature = |i: usize, s: usize| temperature0 + s * nodes + i;
        let (soc0, charge0, discharge0) = (var(slots + 1), var(slots), var(slots));
        // per group: the slots it may run in, and where its x and y variables start
        let mut windows = Vec::new();
        for (_, deadline, members) in &groups {
            let first = members.iter().map(|&f| ((self.frames[f].arrival - self.start) / dt).ceil() as usize).min();
            let first = first.unwrap_or(slots);
            let last = (((deadline - self.start) / dt).floor() as usize).min(slots); // slots < last end by the deadline
            let count = last.saturating_sub(first);
            windows.push((first, count, var(count), var(count)));
        }
        let mut rows = Triplets::default();
        let mut b = Vec::new();
        // equalities first (the zero cone)
        for i in 0..nodes {
            rows.add(b.len(), temperature(i, 0), 1.0);
            b.push(self.plant.temperatures_k[i] - ZERO_CELSIUS_K);
        }
        let radiation = |i: usize, s: usize| {
            let reference = reference_k[s][i];
            (network.radiated_w(i, reference), network.radiated_slope_w_k(i, reference), reference - ZERO_CELSIUS_K)
        };
        let exposure = |s: usize| self.exposure(self.start + s as f64 * dt).map_err(|e| e.to_string());
        rows.add(b.len(), soc0, 1.0);
        b.push(self.plant.soc);
        let capacity_j = power.capacity_wh() * 3600.0;
        for s in 0..slots {
            let row = b.len();
            rows.add(row, soc0 + s + 1, 1.0);
            rows.add(row, soc0 + s, -1.0);
            rows.add(row, charge0 + s, -dt * power.charge_efficiency / capacity_j);
            rows.add(row, discharge0 + s, dt / capacity_j);
            b.push(0.0);
        }
        for s in 0..slots {
            let (e0, e1) = (exposure(s)?, exposure(s + 1)?);
            for i in 0..nodes {
                let row = b.len();
                let capacity = network.nodes[i].heat_capacity_j_k;
                rows.add(row, temperature(i, s + 1), capacity);
                rows.add(row, temperature(i, s), -capacity);
                let mut constant = 0.5 * dt * (network.absorbed_w(i, e0) + network.absorbed_w(i, e1));
                for (end, weight) in [(s, 0.5 * dt), (s + 1, 0.5 * dt)] {
                    let (r, slope, reference_c) = radiation(i, end);
                    // C dT = ... - (r + slope (T - T_ref)) ...: move the T term to the left
                    rows.add(row, temperature(i, end), weight * slope);
                    constant -= weight * (r - slope * reference_c);
                    for &(a, c, g) in &network.links {
                        let other = if a == i {
                            c
                        } else if c == i {
                            a
                        } else {
                            continue;
                        };
                        rows.add(row, temperature(i, end), weight * g);
                        rows.add(row, temperature(other, end), -weight * g);
                    }
                }
                if i == loads.bus {
                    constant += dt * power.bus_load_w;
                }
                if i == loads.battery {
                    rows.add(row, charge0 + s, -dt * (1.0 - power.charge_efficiency));
                }
                if i == loads.payload {
                    constant += dt * power.gpu_idle_w;
                    rows.add(row, u0 + s, -dt * (power.gpu_active_w - power.gpu_idle_w));
                }
                b.push(constant);
            }
        }
        for &(_, count, x0, y0) in &windows {
            for k in 0..count {
                let row = b.len();
                rows.add(row, y0 + k, 1.0);
                rows.add(row, x0 + k, -1.0);
                if k > 0 {
                    rows.add(row, y0 + k - 1, -1.0);
                }
                b.push(0.0);
            }
        }
        let equalities = b.len();
        // inequalities (the nonnegative cone: A x <= b)
        for s in 0..slots {
            let row = b.len();
            for &(first, count, x0, _) in &windows {
                if (first..first + count).contains(&s) {
                    rows.add(row, x0 + s - first, 1.0);
                }
            }
            rows.add(row, u0 + s, -dt / self.workload.tile_s);
            b.push(0.0);
            rows.add(b.len(), u0 + s, 1.0);
            b.push(1.0);
            rows.add(b.len(), u0 + s, -1.0);
            b.push(0.0);
            // what goes into the battery, less what comes out, is at most the array's surplus
            let row = b.len();
            rows.add(row, charge0 + s, 1.0);
            rows.add(row, discharge0 + s, -1.0);
            rows.add(row, u0 + s, power.gpu_active_w - power.gpu_idle_w);
            b.push(self.array_w(s)? - power.bus_load_w - power.gpu_idle_w);
            for (column, high) in [(charge0 + s, power.max_charge_w), (discharge0 + s, power.max_discharge_w)] {
                rows.add(b.len(), column, 1.0);
                b.push(high);
                rows.add(b.len(), column, -1.0);
                b.push(0.0);
            }
            rows.add(b.len(), soc0 + s + 1, 1.0);
            b.push(1.0);
            rows.add(b.len(), soc0 + s + 1, -1.0);
            b.push(-(self.truth.min_soc - shift.soc));
        }
        for ((_, _, members), &(first, count, x0, y0)) in groups.iter().zip(&windows) {
            for k in 0..count {
                let slot_start = self.start + (first + k) as f64 * dt;
                let arrived: f64 = members
                    .iter()
                    .filter(|&&f| self.frames[f].arrival <= slot_start)
                    .map(|&f| self.frames[f].tiles)
                    .sum();
                rows.add(b.len(), y0 + k, 1.0);
                b.push(arrived);
                rows.add(b.len(), x0 + k, -1.0);
                b.push(0.0);
            }
        }
        for s in 1..=slots {
            for (i, &(low, high)) in self.truth.temperatures_c.iter().enumerate() {
                rows.add(b.len(), temperature(i, s), 1.0);
                b.push(high + shift.kelvin);
                rows.add(b.len(), temperature(i, s), -1.0);
                b.push(-low);
            }
        }
        let mut q = vec![0.0; n_vars];
        for ((weight, _, _), &(_, count, x0, _)) in groups.iter().zip(&windows) {
            for k in 0..count {
                q[x0 + k] = -weight;
            }
        }
        let m = b.len();
        let a = CscMatrix::new_from_triplets(m, n_vars, rows.rows, rows.columns, rows.values);
        let p = CscMatrix::zeros((n_vars, n_vars));
        let cones = [ZeroConeT(equalities), NonnegativeConeT(m - equalities)];
        let settings =
            DefaultSettingsBuilder::default().verbose(false).max_iter(200).build().map_err(|e| e.to_string())?;
        let mut solver = DefaultSolver::new(&p, &q, &a, &b, &cones, settings).map_err(|e| format!("{e:?}"))?;
        solver.solve();
        let solution = &solver.solution;
        if !matches!(solution.status, SolverStatus::Solved | SolverStatus::AlmostSolved) {
            return Err(format!("the LP was not solved: {:?}", solution.status));
        }
        let x = &solution.x;
        let mut runs = vec![Vec::new(); slots];
        for ((_, _, members), &(first, count, x0, _)) in groups.iter().zip(&windows) {
            // the group's tiles are its frames' in arrival order
            let mut left: Vec<f64> = members.iter().map(|&f| self.frames[f].tiles).collect();
            for k in 0..count {
                let s = first + k;
                let slot_start = self.start + s as f64 * dt;
                let mut n = x[x0 + k].max(0.0);
                for (j, &f) in members.iter().enumerate() {
                    if self.frames[f].arrival > slot_start || n <= 1e-9 {
                        continue;
                    }
                    let take = left[j].min(n);
                    if take > 1e-9 {
                        runs[s].push((f, take));
                        left[j] -= take;
                        n -= take;
                    }
                }
            }
        }
        let duties = (0..slots).map(|s| x[u0 + s].clamp(0.0, 1.0)).collect();
        let payload_c = (0..=slots).map(|s| x[temperature(loads.payload, s)]).collect();
        Ok(LpSolution { value: -solution.obj_val, plan: ReplayPlan { duties, runs }, payload_c })
    }
}

/// GPU seconds by `t` on a forecast of `(time, cumulative GPU seconds)`, linear in between.
fn interpolate(capacity: &[(f64, f64)], t: f64) -> f64 {
    match capacity.iter().position(|c| c.0 > t) {
        None => capacity.last().map_or(0.0, |c| c.1),
        Some(0) => 0.0,
        Some(k) => {
            let ((t0, c0), (t1, c1)) = (capacity[k - 1], capacity[k]);
            c0 + (c1 - c0) * (t - t0) / (t1 - t0)
        }
    }
}

fn reference_duties(outcome: &Outcome) -> Vec<f64> {
    outcome.trace.iter().map(|&(_, _, duty)| duty).collect()
}

/// A schedule to replay: each slot's duty and the tiles (frame, count) it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayPlan {
    pub duties: Vec<f64>,
    pub runs: Vec<Vec<(usize, f64)>>,
}

/// The constraint matrix as it is built: (row, column, value) entries.
#[derive(Default)]
struct Triplets {
    rows: Vec<usize>,
    columns: Vec<usize>,
    values: Vec<f64>,
}

impl Triplets {
    fn add(&mut self, row: usize, column: usize, value: f64) {
        self.rows.push(row);
        self.columns.push(column);
        self.values.push(value);
    }
}

struct Trajectory {
    temperatures_k: Vec<Vec<f64>>,
}

/// How far the LP's limits are moved from the mission's: outwards (a bound) or inwards (a
/// schedule the real plant keeps to).
#[derive(Debug, Clone, Copy)]
struct Shift {
    kelvin: f64,
    soc: f64,
}

struct LpSolution {
    value: f64,
    plan: ReplayPlan,
    payload_c: Vec<f64>,
}

/// The four policies over one day.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub workload: Workload,
    pub frames: usize,
    pub passes: usize,
    pub eclipses: Vec<(f64, f64)>,
    pub start: f64,
    pub value_offered: f64,
    pub greedy: Outcome,
    pub fixed: Outcome,
    pub ours: Outcome,
    pub optimum: Optimum,
    pub seconds: f64,
}

impl Evaluation {
    /// Flight's scheduler's value as a share of the optimum's bound.
    pub fn share_of_optimum(&self) -> f64 {
        self.ours.value / self.optimum.bound
    }
}

/// Evaluates the mission in `mission` (its `[thermal]` plant and `[flight.schedule]`) over the
/// day `workload` describes.
pub fn evaluate(mission: &Path, workload: Workload) -> Result<Evaluation, String> {
    let started = std::time::Instant::now();
    let thermal = LoadedThermalMission::load(mission).map_err(|e| e.to_string())?;
    let flight = kestrel_flight::config::LoadedFlightMission::load(mission).map_err(|e| e.to_string())?;
    let scheduler = Scheduler::new(&thermal.config.thermal, &flight.config.flight.schedule);
    let workload = Workload { deadline_lead_s: *flight.config.flight.schedule.deadline_lead_s.get_ref(), ..workload };
    let day = Day::new(&thermal, scheduler, workload).map_err(|e| e.to_string())?;
    let greedy = day.simulate(Policy::Greedy, None).map_err(|e| e.to_string())?;
    let fixed = day.best_fixed_duty().map_err(|e| e.to_string())?;
    let ours = day.simulate(Policy::Scheduler, None).map_err(|e| e.to_string())?;
    let optimum = day.optimum(&ours)?;
    Ok(Evaluation {
        workload,
        frames: day.frames.len(),
        passes: day.passes.iter().filter(|p| p.0 < day.end()).count(),
        eclipses: day.eclipses.clone(),
        start: day.start,
        value_offered: day.value_offered(),
        greedy,
        fixed,
        ours,
        optimum,
        seconds: started.elapsed().as_secs_f64(),
    })
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = &self.workload;
        writeln!(
            f,
            "{} h, {} frames ({} tiles of {} GPU s each, one a {} s in sunlight), {} passes; value offered {:.0}",
            w.hours, self.frames, w.tiles_per_frame, w.tile_s, w.frame_every_s, self.passes, self.value_offered
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| policy | value | of optimum | tiles run | screened only | time outside limits | worst | payload max | battery max | lowest SoC | GPU energy | from battery |"
        )?;
        writeln!(f, "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")?;
        let bound = self.optimum.bound;
        for o in [&self.greedy, &self.fixed, &self.ours, &self.optimum.replay] {
            writeln!(
                f,
                "| {} | {:.0} | {:.1} % | {:.0} | {:.0} | {:.0} min | {} | {:.1} °C | {:.1} °C | {:.0} % | {:.0} Wh | {:.0} Wh |",
                o.policy,
                o.value,
                100.0 * o.value / bound,
                o.tiles_run,
                o.tiles_screened_only,
                o.violation_s / 60.0,
                o.worst.as_deref().unwrap_or("none"),
                o.max_payload_c,
                o.max_battery_c,
                o.min_soc * 100.0,
                o.gpu_wh,
                o.battery_wh
            )?;
        }
        writeln!(f, "| offline optimum (LP bound) | {bound:.0} | 100 % | | | | | | | | | |")?;
        writeln!(f)?;
        writeln!(
            f,
            "flight's scheduler: {:.1} % of the optimum's bound; LP solved {} times, linearisation error along the optimum {:.3} K; evaluation took {:.1} s",
            100.0 * self.share_of_optimum(),
            self.optimum.solves,
            self.optimum.model_error_k,
            self.seconds
        )
    }
}

/// Writes the plot: the payload temperature of each policy over the day against its limit, with
/// eclipses shaded, and each policy's GPU duty below.
pub fn write_svg(evaluation: &Evaluation, limit_c: f64, path: &Path) -> Result<(), String> {
    let draw = |e: &dyn fmt::Display| format!("cannot draw `{}`: {e}", path.display());
    let root = SVGBackend::new(path, (1400, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let (upper, lower) = root.split_vertically(520);
    let span_min = evaluation.workload.hours * 60.0;
    let policies = [
        (&evaluation.greedy, RED),
        (&evaluation.fixed, RGBColor(200, 120, 0)),
        (&evaluation.ours, BLUE),
        (&evaluation.optimum.replay, BLACK),
    ];
    let high = policies.iter().map(|(o, _)| o.max_payload_c).fold(limit_c, f64::max) + 5.0;
    let mut chart = ChartBuilder::on(&upper)
        .caption("payload temperature over one day (eclipses shaded)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..span_min, 0.0..high)
        .map_err(|e| draw(&e))?;
    chart.configure_mesh().x_desc("minutes").y_desc("deg C").draw().map_err(|e| draw(&e))?;
    let minutes = |unix: f64| (unix - evaluation.start) / 60.0;
    chart
        .draw_series(
            evaluation.eclipses.iter().map(|&(a, b)| {
                Rectangle::new([(minutes(a), 0.0), (minutes(b), high)], RGBColor(225, 225, 235).filled())
            }),
        )
        .map_err(|e| draw(&e))?;
    chart
        .draw_series(LineSeries::new([(0.0, limit_c), (span_min, limit_c)], MAGENTA.stroke_width(1)))
        .map_err(|e| draw(&e))?
        .label(format!("limit {limit_c} °C"))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], MAGENTA));
    for (outcome, color) in policies {
        chart
            .draw_series(LineSeries::new(outcome.trace.iter().map(|&(m, t, _)| (m, t)), color.stroke_width(2)))
            .map_err(|e| draw(&e))?
            .label(outcome.policy.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(|e| draw(&e))?;
    let mut duty = ChartBuilder::on(&lower)
        .caption("GPU duty per slot (15-minute means)", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..span_min, 0.0..1.05)
        .map_err(|e| draw(&e))?;
    duty.configure_mesh().x_desc("minutes").y_desc("duty").draw().map_err(|e| draw(&e))?;
    for (outcome, color) in policies {
        let means = outcome.trace.chunks(15).map(|c| (c[0].0, c.iter().map(|s| s.2).sum::<f64>() / c.len() as f64));
        duty.draw_series(LineSeries::new(means, color.stroke_width(2))).map_err(|e| draw(&e))?;
    }
    root.present().map_err(|e| draw(&e))
}
