//! The thermal and power-aware scheduler: how hard the GPU may work in the next slot, and what
//! each waiting tile gets — run now, defer, or the cheap screen only. It forecasts the plant
//! (`kestrel_thermal::simulate::Plant`) forward from the present, so that an eclipse, the Sun on
//! the radiator or heat still travelling to the battery is seen before it arrives.
//!
//! The duty of a slot is the highest that keeps every forecast temperature and the state of charge
//! inside the mission's limits (less the margins), through the slot and a look-ahead of idling
//! after it. Which tiles the duty is spent on comes from a forecast of the whole capacity up to the
//! latest deadline: tiles are kept by weight, highest first, while every kept tile still fits
//! before its deadline, then run earliest deadline first. For tiles of one length that is the
//! greedy that is optimal (the feasible sets form a matroid); docs/scheduler.md measures the
//! whole against the offline optimum.

use kestrel_link::uplink::Mode;
use kestrel_thermal::config::ThermalConfig;
use kestrel_thermal::network::Exposure;
use kestrel_thermal::orbit::OrbitError;
use kestrel_thermal::simulate::{Plant, Sample};

use crate::config::{LateTiles, ScheduleConfig};

/// Step of the forecasts: the plant's own integration step, seconds.
pub const STEP_S: f64 = 10.0;
/// The duty is found to 1/2^DUTY_BISECTIONS of a slot.
const DUTY_BISECTIONS: u32 = 5;
/// Slots per step of the capacity forecast.
pub const CAPACITY_SLOTS: usize = 5;

/// Where the spacecraft is lit, and how, at a given instant (the orbit, or a table of it).
pub type ExposureAt<'a> = dyn Fn(f64) -> Result<Exposure, OrbitError> + 'a;

/// The orbit's exposure sampled every [`STEP_S`] from a start: a forecast tries several loads
/// along the same stretch of orbit, and the orbit (SGP4, the Sun) is computed once for all.
#[derive(Debug, Clone, PartialEq)]
pub struct ExposureTable {
    start: f64,
    samples: Vec<Exposure>,
}

impl ExposureTable {
    /// The exposures of `plant`'s orbit from `start` for `span` seconds.
    pub fn along(plant: &Plant, start: f64, span: f64) -> Result<Self, OrbitError> {
        let samples = (0..=(span / STEP_S).ceil() as usize)
            .map(|k| plant.exposure(start + k as f64 * STEP_S))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { start, samples })
    }

    /// The exposure at `t`: the nearest sample (the last one past the table's end).
    pub fn at(&self, t: f64) -> Exposure {
        let k = ((t - self.start) / STEP_S).round().max(0.0) as usize;
        self.samples[k.min(self.samples.len() - 1)]
    }
}

/// The limits the scheduler holds the plant within, margins already taken off.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Per thermal node, degrees Celsius: (lowest, highest).
    pub temperatures_c: Vec<(f64, f64)>,
    pub min_soc: f64,
}

impl Limits {
    /// The mission's limits, narrowed by `margin_c` and `margin_soc` (zero margins: the limits
    /// themselves, what an evaluation counts violations against).
    pub fn of(thermal: &ThermalConfig, margin_c: f64, margin_soc: f64) -> Self {
        Self {
            temperatures_c: thermal
                .nodes
                .iter()
                .map(|n| (n.min_temperature_c + margin_c, n.max_temperature_c - margin_c))
                .collect(),
            min_soc: thermal.power.battery_min_soc.get_ref() + margin_soc,
        }
    }

    /// Whether a sample of the plant is inside every limit (a brown-out never is).
    pub fn hold(&self, sample: &Sample) -> bool {
        sample.power.unmet_w <= 0.0
            && sample.soc >= self.min_soc
            && sample.temperatures_c.iter().zip(&self.temperatures_c).all(|(t, (low, high))| low <= t && t <= high)
    }
}

/// Tiles waiting for the GPU that share a weight (the value of detecting in them) and a deadline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Waiting {
    pub weight: f64,
    /// Unix seconds by which the tiles must have run to count (their products make the pass).
    pub deadline: f64,
    pub tiles: f64,
}

/// What one waiting tile gets now. There is no "drop": a tile is the only copy of its pixels, so
/// one whose time has passed still gets the screen (or, with `late_tiles = "detect"`, detection
/// when the GPU is free), and in SAFE mode tiles wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Detection runs on it now.
    Run,
    /// It waits for GPU time: the slot's budget is spent, or the spacecraft is in SAFE mode.
    Defer,
    /// Its deadline came without detection: the cheap screen runs so that the frame is still
    /// counted and thumbnailed for the pass, and the GPU's time goes to fresher frames.
    ScreenOnly,
}

/// The scheduler of one mission.
#[derive(Debug, Clone, PartialEq)]
pub struct Scheduler {
    pub limits: Limits,
    pub slot_s: f64,
    pub lookahead_s: f64,
}

/// Runs the plant from `t` for `duration` seconds with the GPU at `duty`; false as soon as a
/// sample leaves `limits` (when given).
fn advance(
    plant: &mut Plant,
    t: f64,
    duration: f64,
    duty: f64,
    exposure: &ExposureAt,
    limits: Option<&Limits>,
) -> Result<bool, OrbitError> {
    let gpu_w = plant.power.gpu_idle_w + (plant.power.gpu_active_w - plant.power.gpu_idle_w) * duty;
    let mut time = t;
    let end = t + duration;
    while time < end - 1e-9 {
        let dt = STEP_S.min(end - time);
        let sample = plant.step_exposed(time, dt, exposure(time)?, gpu_w);
        if limits.is_some_and(|l| !l.hold(&sample)) {
            return Ok(false);
        }
        time += dt;
    }
    Ok(true)
}

impl Scheduler {
    pub fn new(thermal: &ThermalConfig, config: &ScheduleConfig) -> Self {
        Self {
            limits: Limits::of(thermal, *config.margin_c.get_ref(), *config.margin_soc.get_ref()),
            slot_s: *config.slot_s.get_ref(),
            lookahead_s: *config.lookahead_s.get_ref(),
        }
    }

    /// Whether the plant stays within the limits with the GPU at `duty` for `span` seconds from
    /// `t`, and idle for `lookahead` seconds after.
    fn holds(
        &self,
        plant: &Plant,
        t: f64,
        span: f64,
        lookahead: f64,
        duty: f64,
        exposure: &ExposureAt,
    ) -> Result<bool, OrbitError> {
        let mut forecast = plant.clone();
        Ok(advance(&mut forecast, t, span, duty, exposure, Some(&self.limits))?
            && advance(&mut forecast, t + span, lookahead, 0.0, exposure, Some(&self.limits))?)
    }

    /// The highest GPU duty (0 to 1, to 1/2^bisections) that holds for `span` from `t` and the
    /// look-ahead after. When even idling leaves a limit (a cold node the GPU's heat helps, or a
    /// hot one it cannot), full duty is taken if that holds, else none.
    fn highest_duty(
        &self,
        plant: &Plant,
        t: f64,
        (span, lookahead): (f64, f64),
        bisections: u32,
        exposure: &ExposureAt,
    ) -> Result<f64, OrbitError> {
        let holds = |duty| self.holds(plant, t, span, lookahead, duty, exposure);
        if holds(1.0)? {
            return Ok(1.0);
        }
        if !holds(0.0)? {
            return Ok(0.0);
        }
        let (mut low, mut high) = (0.0, 1.0);
        for _ in 0..bisections {
            let mid = 0.5 * (low + high);
            if holds(mid)? {
                low = mid;
            } else {
                high = mid;
            }
        }
        Ok(low)
    }

    /// The highest GPU duty (0 to 1) for the slot that begins at `t`, when a tile that starts
    /// in it may run on for `overrun_s` past its end.
    pub fn safe_duty(&self, plant: &Plant, t: f64, overrun_s: f64, exposure: &ExposureAt) -> Result<f64, OrbitError> {
        self.highest_duty(plant, t, (self.slot_s + overrun_s, self.lookahead_s), DUTY_BISECTIONS, exposure)
    }

    /// The GPU time the plant allows from `t` to `until`, riding the limits:
    /// `(time, GPU seconds from t to there)` every [`CAPACITY_SLOTS`] slots. Coarser than
    /// [`Scheduler::safe_duty`] (no look-ahead, duties to 1/8): it ranks waiting work hours ahead,
    /// while each slot's own duty is still decided by `safe_duty`.
    pub fn capacity(
        &self,
        plant: &Plant,
        t: f64,
        until: f64,
        exposure: &ExposureAt,
    ) -> Result<Vec<(f64, f64)>, OrbitError> {
        let span = CAPACITY_SLOTS as f64 * self.slot_s;
        let mut forecast = plant.clone();
        let (mut time, mut total) = (t, 0.0);
        let mut out = Vec::new();
        while time < until {
            let duty = self.highest_duty(&forecast, time, (span, 0.0), 3, exposure)?;
            advance(&mut forecast, time, span, duty, exposure, None)?;
            time += span;
            total += duty * span;
            out.push((time, total));
        }
        Ok(out)
    }

    /// Advances `plant` through one slot from `t` with the GPU at `duty` (what the evaluation
    /// and flight's own plant do between decisions).
    pub fn run_slot(&self, plant: &mut Plant, t: f64, duty: f64, exposure: &ExposureAt) -> Result<(), OrbitError> {
        advance(plant, t, self.slot_s, duty, exposure, None).map(drop)
    }
}

/// How many of each group's tiles to keep for detection, given the forecast `capacity` (from
/// [`Scheduler::capacity`]) and the GPU seconds one tile takes: by weight, highest first, while
/// every kept tile still fits before its deadline.
pub fn keep(waiting: &[Waiting], capacity: &[(f64, f64)], tile_s: f64) -> Vec<f64> {
    let tiles_by = |deadline: f64| {
        capacity.iter().take_while(|(t, _)| *t <= deadline + 1e-6).last().map_or(0.0, |(_, gpu_s)| gpu_s / tile_s)
    };
    let mut order: Vec<usize> = (0..waiting.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&waiting[a], &waiting[b]);
        b.weight.total_cmp(&a.weight).then(a.deadline.total_cmp(&b.deadline))
    });
    let mut kept = vec![0.0; waiting.len()];
    for g in order {
        let due = waiting[g].deadline;
        let room = waiting
            .iter()
            .filter(|w| w.deadline >= due)
            .map(|w| {
                let committed: f64 =
                    waiting.iter().zip(&kept).filter(|(v, _)| v.deadline <= w.deadline).map(|(_, k)| k).sum();
                tiles_by(w.deadline) - committed
            })
            .fold(f64::INFINITY, f64::min);
        kept[g] = waiting[g].tiles.min(room.max(0.0));
    }
    kept
}

/// Spends `budget` tiles of GPU time on the kept tiles, earliest deadline first (the higher
/// weight first between equal deadlines): how many of each group run in this slot.
pub fn spend(waiting: &[Waiting], kept: &[f64], budget: f64) -> Vec<f64> {
    let mut order: Vec<usize> = (0..waiting.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&waiting[a], &waiting[b]);
        a.deadline.total_cmp(&b.deadline).then(b.weight.total_cmp(&a.weight))
    });
    let mut left = budget;
    let mut run = vec![0.0; waiting.len()];
    for g in order {
        run[g] = kept[g].min(left);
        left -= run[g];
    }
    run
}

/// What a tile gets, from the mode, its deadline, what to do with late tiles, and whether the
/// GPU budget has time for it now.
pub fn decide(mode: Mode, late: bool, late_tiles: LateTiles, budget_allows: bool) -> Decision {
    match (mode, late && late_tiles == LateTiles::Screen, budget_allows) {
        (Mode::Safe, _, _) => Decision::Defer,
        (_, true, _) => Decision::ScreenOnly,
        (_, false, true) => Decision::Run,
        (_, false, false) => Decision::Defer,
    }
}

/// The GPU time flight may spend, as a token bucket: credit accrues at the slot's duty (mission
/// seconds of GPU per mission second) up to a small burst, and each run of the model spends what
/// it took. A run starts when the credit covers one tile at the last run's time per tile (or the
/// bucket is full: a tile longer than the burst, on an accelerated clock, then puts it in debt),
/// and takes as many tiles as the credit covers, up to the detector's batch: so the duty holds on
/// average whatever the clock's rate, no slot runs more than its duty, and at full duty the
/// detector runs its largest batches (fastest per tile) while a throttled one runs what its credit
/// covers (single tiles when it is short: a batch is a coarser step of heat).
#[derive(Debug, Clone, PartialEq)]
pub struct GpuBudget {
    duty: f64,
    slot_s: f64,
    slot_started_ms: Option<i64>,
    credit_s: f64,
    updated_ms: i64,
    /// The last run's mission time: how far a run may go on past its slot.
    last_run_s: f64,
    /// The last run's mission time per step: per tile, or the whole run where a run costs a full
    /// batch ([`RunCost::FullBatch`]).
    last_step_s: f64,
}

/// What a run of the detector costs the GPU, by its tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunCost {
    /// Each tile its own time (the CPU provider).
    PerTile,
    /// A full batch whatever its tiles: on a GPU flight fills a short batch with blank tiles
    /// (`Detector::set_accelerated`), so a run takes all the tiles it may, and the credit is
    /// counted in runs.
    FullBatch,
}

/// The burst the bucket holds, as a share of a slot at the duty.
const BURST_OF_SLOT: f64 = 0.1;

impl GpuBudget {
    pub fn new(slot_s: f64) -> Self {
        Self {
            duty: 1.0,
            slot_s,
            slot_started_ms: None,
            credit_s: 0.0,
            updated_ms: 0,
            last_run_s: 0.0,
            last_step_s: 0.0,
        }
    }

    pub fn duty(&self) -> f64 {
        self.duty
    }

    fn burst_s(&self) -> f64 {
        self.duty * self.slot_s * BURST_OF_SLOT
    }

    /// Whether a new slot is due at `now_ms`: the first call, or a slot after the last began.
    pub fn slot_due(&self, now_ms: i64) -> bool {
        self.slot_started_ms.is_none_or(|start| (now_ms - start) as f64 >= self.slot_s * 1000.0)
    }

    /// Begins a slot at `now_ms` with the GPU allowed `duty`.
    pub fn begin_slot(&mut self, now_ms: i64, duty: f64) {
        self.accrue(now_ms);
        let first = self.slot_started_ms.is_none();
        self.duty = duty;
        self.credit_s = if first { self.burst_s() } else { self.credit_s.min(self.burst_s()) };
        self.slot_started_ms = Some(now_ms);
    }

    fn accrue(&mut self, now_ms: i64) {
        if self.slot_started_ms.is_some() {
            let earned = self.duty * (now_ms - self.updated_ms).max(0) as f64 / 1000.0;
            self.credit_s = (self.credit_s + earned).min(self.burst_s());
        }
        self.updated_ms = now_ms;
    }

    /// The mission time the last run took, seconds: how far one may go on past its slot.
    pub fn last_run_s(&self) -> f64 {
        self.last_run_s
    }

    /// Whether a tile may start at `now_ms` (never once the slot is over and the next one not
    /// yet decided).
    pub fn allows(&mut self, now_ms: i64) -> bool {
        self.accrue(now_ms);
        if self.slot_due(now_ms) {
            return false;
        }
        self.duty >= 1.0
            || (self.duty > 0.0 && self.credit_s > 0.0 && self.credit_s >= self.last_step_s.min(self.burst_s()))
    }

    /// How many tiles (1 to `most`) the next run may take, when [`GpuBudget::allows`] one: all of
    /// `most` at full duty or where a run costs a full batch anyway, else as many as the credit
    /// covers at the last run's time per tile.
    pub fn tiles_allowed(&self, most: usize, cost: RunCost) -> usize {
        if self.duty >= 1.0 || cost == RunCost::FullBatch {
            return most.max(1);
        }
        if self.last_step_s <= 0.0 {
            return 1;
        }
        ((self.credit_s / self.last_step_s).floor() as usize).clamp(1, most.max(1))
    }

    /// Records a run of `tiles` tiles that kept the GPU busy `mission_s` seconds of mission time.
    pub fn spend(&mut self, mission_s: f64, tiles: usize, cost: RunCost) {
        self.credit_s -= mission_s;
        self.last_run_s = mission_s;
        self.last_step_s = match cost {
            RunCost::PerTile => mission_s / tiles.max(1) as f64,
            RunCost::FullBatch => mission_s,
        };
    }
}

/// The mode the scheduler's duty asks for, with hysteresis: THROTTLED as soon as the duty is
/// limited; NOMINAL again only when full duty is allowed with the margins back (the payload
/// `RECOVERY_K` under its limit, the battery `RECOVERY_SOC` over its minimum). SAFE is left alone:
/// only a command or a restart leaves it.
pub fn mode_for(current: Mode, duty: f64, payload: (f64, f64), soc: (f64, f64)) -> Mode {
    let ((payload_c, payload_limit_c), (soc, min_soc)) = (payload, soc);
    match current {
        Mode::Nominal if duty < 1.0 => Mode::Throttled,
        Mode::Throttled if duty >= 1.0 && payload_c < payload_limit_c - RECOVERY_K && soc > min_soc + RECOVERY_SOC => {
            Mode::Nominal
        }
        mode => mode,
    }
}

/// Margins that must be back before THROTTLED ends.
pub const RECOVERY_K: f64 = 10.0;
pub const RECOVERY_SOC: f64 = 0.10;

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(weight: f64, deadline: f64, tiles: f64) -> Waiting {
        Waiting { weight, deadline, tiles }
    }

    #[test]
    fn the_heaviest_tiles_are_kept_when_capacity_is_short() {
        // 10 tiles' worth of GPU time by t = 100, 20 by t = 200
        let capacity = [(100.0, 10.0), (200.0, 20.0)];
        let groups = [waiting(1.0, 100.0, 8.0), waiting(5.0, 100.0, 6.0), waiting(2.0, 200.0, 10.0)];
        let kept = keep(&groups, &capacity, 1.0);
        // the weight-5 group first (6), then weight 2 (10 by t=200: room 20 - 6 = 14), then what
        // is left before t=100 for weight 1 (10 - 6 = 4; and by 200: 20 - 16 = 4)
        assert_eq!(kept, [4.0, 6.0, 10.0]);
    }

    #[test]
    fn a_later_deadline_does_not_take_room_an_earlier_one_needs() {
        let capacity = [(100.0, 5.0), (200.0, 10.0)];
        let groups = [waiting(5.0, 200.0, 10.0), waiting(1.0, 100.0, 5.0)];
        let kept = keep(&groups, &capacity, 1.0);
        assert_eq!(kept, [10.0, 0.0], "the heavy group fills all 10 by t=200, so nothing fits before");
        let run = spend(&groups, &kept, 3.0);
        assert_eq!(run, [3.0, 0.0]);
    }

    #[test]
    fn the_slot_runs_the_earliest_deadline_first() {
        let groups = [waiting(1.0, 300.0, 4.0), waiting(1.0, 100.0, 2.0), waiting(3.0, 100.0, 1.0)];
        assert_eq!(spend(&groups, &[4.0, 2.0, 1.0], 4.0), [1.0, 2.0, 1.0]);
    }

    #[test]
    fn decisions_follow_mode_deadline_and_budget() {
        use LateTiles::{Detect, Screen};
        assert_eq!(decide(Mode::Safe, true, Screen, true), Decision::Defer);
        assert_eq!(decide(Mode::Nominal, true, Screen, false), Decision::ScreenOnly);
        assert_eq!(decide(Mode::Throttled, true, Detect, true), Decision::Run);
        assert_eq!(decide(Mode::Nominal, false, Screen, true), Decision::Run);
        assert_eq!(decide(Mode::Throttled, false, Screen, false), Decision::Defer);
    }

    /// Runs tiles of `tile_ms` whenever the budget allows, in batches of as many as it allows up
    /// to `most`, for `span_ms`: the share of the time the GPU was busy, and the largest batch.
    fn busy_share(duty: f64, tile_ms: i64, most: usize, span_ms: i64) -> (f64, usize) {
        busy_share_costing(duty, tile_ms, most, span_ms, RunCost::PerTile)
    }

    /// As `busy_share`, a run costing as `cost` says: `tile_ms` per tile, or `tile_ms` per run
    /// whatever its tiles.
    fn busy_share_costing(duty: f64, tile_ms: i64, most: usize, span_ms: i64, cost: RunCost) -> (f64, usize) {
        let mut budget = GpuBudget::new(60.0);
        let (mut now, mut busy, mut largest) = (0, 0, 0);
        while now < span_ms {
            if budget.slot_due(now) {
                budget.begin_slot(now, duty);
            }
            if budget.allows(now) {
                let tiles = budget.tiles_allowed(most, cost);
                let run_ms = if cost == RunCost::PerTile { tile_ms * tiles as i64 } else { tile_ms };
                budget.spend(run_ms as f64 / 1000.0, tiles, cost);
                now += run_ms;
                busy += run_ms;
                largest = largest.max(tiles);
            } else {
                now += 100;
            }
        }
        (busy as f64 / span_ms as f64, largest)
    }

    #[test]
    fn the_budget_holds_the_duty_for_short_and_for_long_tiles_one_or_several_at_a_time() {
        for duty in [0.0, 0.25, 0.5, 1.0] {
            for tile_ms in [500, 5_000, 200_000] {
                for most in [1, 4] {
                    let (share, _) = busy_share(duty, tile_ms, most, 24 * 3_600_000);
                    assert!((share - duty).abs() < 0.02, "duty {duty}, tiles of {tile_ms} ms by {most}: busy {share}");
                }
                // a GPU: a run of up to 16 tiles costs `tile_ms` whatever its tiles
                let (share, largest) = busy_share_costing(duty, tile_ms, 16, 24 * 3_600_000, RunCost::FullBatch);
                assert!((share - duty).abs() < 0.02, "duty {duty}, runs of {tile_ms} ms: busy {share}");
                assert_eq!(largest, if duty > 0.0 { 16 } else { 0 }, "duty {duty}: every run takes a full batch");
            }
        }
    }

    #[test]
    fn full_duty_runs_the_largest_batches_and_a_throttled_one_what_its_credit_covers() {
        assert_eq!(busy_share(1.0, 500, 4, 600_000).1, 4);
        // a burst of 10 % of a 60 s slot at 5 % duty is 0.3 s: less than one tile of 0.5 s
        assert_eq!(busy_share(0.05, 500, 4, 3_600_000).1, 1);
        // at 50 %: 3 s of credit at most, 6 tiles' worth, so batches up to the detector's 4
        assert_eq!(busy_share(0.5, 500, 4, 3_600_000).1, 4);
        let mut budget = GpuBudget::new(60.0);
        budget.begin_slot(0, 0.5);
        assert_eq!(budget.tiles_allowed(4, RunCost::PerTile), 1, "no run yet: one tile, to learn its time");
        budget.spend(1.0, 4, RunCost::PerTile);
        assert!(budget.allows(10_000));
        // 10 s at 50 % bring the credit back to the burst, 3 s: twelve tiles of 0.25 s
        assert_eq!(budget.tiles_allowed(16, RunCost::PerTile), 12);
        assert_eq!(budget.tiles_allowed(4, RunCost::PerTile), 4);
        // where a run costs a full batch, a short one would save nothing
        assert_eq!(budget.tiles_allowed(16, RunCost::FullBatch), 16);
    }

    #[test]
    fn throttled_lasts_until_the_margins_are_back() {
        let soc = (0.8, 0.3);
        assert_eq!(mode_for(Mode::Nominal, 0.6, (79.0, 80.0), soc), Mode::Throttled);
        assert_eq!(mode_for(Mode::Throttled, 1.0, (75.0, 80.0), soc), Mode::Throttled, "only 5 K under");
        assert_eq!(mode_for(Mode::Throttled, 1.0, (69.0, 80.0), soc), Mode::Nominal);
        assert_eq!(mode_for(Mode::Throttled, 1.0, (69.0, 80.0), (0.35, 0.3)), Mode::Throttled, "battery low");
        assert_eq!(mode_for(Mode::Safe, 1.0, (20.0, 80.0), soc), Mode::Safe);
        assert_eq!(mode_for(Mode::Nominal, 1.0, (79.0, 80.0), soc), Mode::Nominal);
    }
}
