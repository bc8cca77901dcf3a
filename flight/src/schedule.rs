//! The thermal and power-aware scheduler: how hard the GPU may work in the next slot, and what
//! each waiting tile gets — run now, defer, the cheap screen only, or drop. It forecasts the plant
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

use kestrel_thermal::config::ThermalConfig;
use kestrel_thermal::network::Exposure;
use kestrel_thermal::orbit::OrbitError;
use kestrel_thermal::simulate::{Plant, Sample};

use crate::config::ScheduleConfig;

/// Step of the forecasts: the plant's own integration step, seconds.
pub const STEP_S: f64 = 10.0;
/// The duty is found to 1/2^DUTY_BISECTIONS of a slot.
const DUTY_BISECTIONS: u32 = 5;
/// Slots per step of the capacity forecast.
pub const CAPACITY_SLOTS: usize = 5;

/// Where the spacecraft is lit, and how, at a given instant (the orbit, or a table of it).
pub type ExposureAt<'a> = dyn Fn(f64) -> Result<Exposure, OrbitError> + 'a;

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

/// What one waiting tile gets now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Detection runs on it in this slot.
    Run,
    /// It waits: kept for later in the slot order, or not kept yet but still before its deadline.
    Defer,
    /// Its deadline came without detection: the cheap screen runs so that the frame is still
    /// counted and thumbnailed for the pass.
    ScreenOnly,
    /// Nothing runs on it: the spacecraft is in SAFE mode and the GPU stays off.
    Drop,
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

    /// The highest GPU duty (0 to 1) for the slot that begins at `t`.
    pub fn safe_duty(&self, plant: &Plant, t: f64, exposure: &ExposureAt) -> Result<f64, OrbitError> {
        self.highest_duty(plant, t, (self.slot_s, self.lookahead_s), DUTY_BISECTIONS, exposure)
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

/// What a tile gets, from the mode, its deadline and whether this slot's budget runs it.
pub fn decide(safe_mode: bool, deadline_passed: bool, runs_now: bool) -> Decision {
    match (safe_mode, deadline_passed, runs_now) {
        (true, _, _) => Decision::Drop,
        (false, true, _) => Decision::ScreenOnly,
        (false, false, true) => Decision::Run,
        (false, false, false) => Decision::Defer,
    }
}

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
        assert_eq!(decide(true, false, true), Decision::Drop);
        assert_eq!(decide(false, true, true), Decision::ScreenOnly);
        assert_eq!(decide(false, false, true), Decision::Run);
        assert_eq!(decide(false, false, false), Decision::Defer);
    }
}
