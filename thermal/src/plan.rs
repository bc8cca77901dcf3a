//! `thermal plan`: a mission plan over N orbits: passes, eclipses, temperature and state-of-charge
//! extremes against their limits, and the energy balance (the `thermal` binary of `kestrel-tools` plots it).

use std::fmt;

use crate::config::LoadedThermalMission;
use crate::events::{self, EclipseTransition, Pass};
use crate::orbit::OrbitError;
use crate::simulate::{Plant, Sample};

/// Step of the plant's integration, seconds.
pub const STEP_S: f64 = 10.0;

/// What the GPU does during the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GpuProfile {
    /// Detection runs all the time: the hot case.
    Active,
    /// The GPU idles all the time: the cold case.
    Idle,
}

#[derive(Debug, Clone)]
pub struct NodeSummary {
    pub name: String,
    pub min_c: f64,
    pub max_c: f64,
    pub limits_c: (f64, f64),
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub mission: String,
    pub start_unix: f64,
    pub end_unix: f64,
    pub gpu: GpuProfile,
    pub passes: Vec<Pass>,
    pub eclipses: Vec<EclipseTransition>,
    pub samples: Vec<Sample>,
    pub nodes: Vec<NodeSummary>,
    pub soc_range: (f64, f64),
    pub min_soc_limit: f64,
    pub unmet_energy_wh: f64,
    /// Energy in (absorbed + dissipated), out (radiated), and the change stored, joules.
    pub energy_in_j: f64,
    pub energy_out_j: f64,
    pub energy_stored_j: f64,
}

pub fn plan(mission: &LoadedThermalMission, orbits: f64, gpu: GpuProfile) -> Result<Plan, OrbitError> {
    let thermal = &mission.config.thermal;
    let mut plant = Plant::new(mission);
    let start = plant.orbit.epoch_unix();
    let end = start + orbits * plant.orbit.period_s();
    let mut passes = Vec::new();
    for station in &thermal.ground_stations {
        passes.extend(events::passes(&plant.orbit, station, start, end)?);
    }
    passes.sort_by(|a, b| a.aos_unix.total_cmp(&b.aos_unix));
    let eclipses = events::eclipses(&plant.orbit, start, end)?;

    let gpu_w = match gpu {
        GpuProfile::Active => plant.power.gpu_active_w,
        GpuProfile::Idle => plant.power.gpu_idle_w,
    };
    let stored_before = plant.network.stored_j(&plant.temperatures_k);
    let mut samples = Vec::new();
    let mut t = start;
    let mut unmet_j = 0.0;
    while t < end {
        let dt = STEP_S.min(end - t);
        let sample = plant.step(t, dt, gpu_w)?;
        unmet_j += sample.power.unmet_w * dt;
        samples.push(sample);
        t += dt;
    }
    let nodes = thermal
        .nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let temps = samples.iter().map(|s| s.temperatures_c[i]);
            NodeSummary {
                name: node.name.clone(),
                min_c: temps.clone().fold(f64::INFINITY, f64::min),
                max_c: temps.fold(f64::NEG_INFINITY, f64::max),
                limits_c: (node.min_temperature_c, node.max_temperature_c),
            }
        })
        .collect();
    let socs = samples.iter().map(|s| s.soc);
    let soc_range = (socs.clone().fold(f64::INFINITY, f64::min), socs.fold(f64::NEG_INFINITY, f64::max));
    Ok(Plan {
        mission: mission.config.mission.name.clone(),
        start_unix: start,
        end_unix: end,
        gpu,
        passes,
        eclipses,
        nodes,
        soc_range,
        min_soc_limit: *thermal.power.battery_min_soc.get_ref(),
        unmet_energy_wh: unmet_j / 3600.0,
        energy_in_j: plant.energy.absorbed_j + plant.energy.dissipated_j,
        energy_out_j: plant.energy.radiated_j,
        energy_stored_j: plant.network.stored_j(&plant.temperatures_k) - stored_before,
        samples,
    })
}

impl Plan {
    /// Minutes from the plan's start, for the report and the plot.
    pub fn minutes(&self, unix: f64) -> f64 {
        (unix - self.start_unix) / 60.0
    }

    /// Eclipses as (entry, exit) pairs; an eclipse cut by the plan's window keeps the window's edge.
    pub fn eclipse_intervals(&self) -> Vec<(f64, f64)> {
        let mut intervals = Vec::new();
        let mut entry = None;
        for transition in &self.eclipses {
            match (transition.sunlit, entry) {
                (false, _) => entry = Some(transition.unix),
                (true, Some(start)) => {
                    intervals.push((start, transition.unix));
                    entry = None;
                }
                (true, None) => intervals.push((self.start_unix, transition.unix)),
            }
        }
        if let Some(start) = entry {
            intervals.push((start, self.end_unix));
        }
        intervals
    }

    /// Whether every modelled temperature and the battery stayed within their limits.
    pub fn within_limits(&self) -> bool {
        self.nodes.iter().all(|n| n.min_c >= n.limits_c.0 && n.max_c <= n.limits_c.1)
            && self.soc_range.0 >= self.min_soc_limit
            && self.unmet_energy_wh == 0.0
    }

    /// Relative error of energy in = energy out + stored.
    pub fn energy_balance_error(&self) -> f64 {
        (self.energy_in_j - self.energy_out_j - self.energy_stored_j).abs() / self.energy_in_j.max(f64::MIN_POSITIVE)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hours = (self.end_unix - self.start_unix) / 3600.0;
        writeln!(f, "mission {}: {hours:.2} h from Unix {:.0}, GPU {:?}", self.mission, self.start_unix, self.gpu)?;
        writeln!(f, "\npasses ({}):", self.passes.len())?;
        for p in &self.passes {
            writeln!(
                f,
                "  {:<10} AOS +{:>7.1} min  LOS +{:>7.1} min  {:>5.1} min  max elevation {:>4.1} deg",
                p.station,
                self.minutes(p.aos_unix),
                self.minutes(p.los_unix),
                p.duration_s() / 60.0,
                p.max_elevation_deg
            )?;
        }
        let eclipses = self.eclipse_intervals();
        writeln!(f, "\neclipses ({}):", eclipses.len())?;
        for (entry, exit) in &eclipses {
            writeln!(
                f,
                "  entry +{:>7.1} min  exit +{:>7.1} min  {:>5.1} min",
                self.minutes(*entry),
                self.minutes(*exit),
                (exit - entry) / 60.0
            )?;
        }
        writeln!(f, "\ntemperatures:")?;
        for n in &self.nodes {
            let flag = if n.min_c < n.limits_c.0 || n.max_c > n.limits_c.1 { "  OUTSIDE LIMITS" } else { "" };
            writeln!(
                f,
                "  {:<10} {:>6.1} to {:>6.1} C  (limits {} to {} C){flag}",
                n.name, n.min_c, n.max_c, n.limits_c.0, n.limits_c.1
            )?;
        }
        let flag = if self.soc_range.0 < self.min_soc_limit { "  BELOW LIMIT" } else { "" };
        writeln!(
            f,
            "\nbattery state of charge {:.1} % to {:.1} % (limit {:.0} %){flag}",
            self.soc_range.0 * 100.0,
            self.soc_range.1 * 100.0,
            self.min_soc_limit * 100.0
        )?;
        if self.unmet_energy_wh > 0.0 {
            writeln!(f, "loads not served: {:.1} Wh (brown-out)", self.unmet_energy_wh)?;
        }
        writeln!(
            f,
            "energy: in {:.1} kJ, out {:.1} kJ, stored {:+.1} kJ (balance error {:.2e})",
            self.energy_in_j / 1e3,
            self.energy_out_j / 1e3,
            self.energy_stored_j / 1e3,
            self.energy_balance_error()
        )?;
        writeln!(f, "{}", if self.within_limits() { "within every limit" } else { "LIMITS VIOLATED" })
    }
}
