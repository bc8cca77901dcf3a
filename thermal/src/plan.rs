//! `thermal plan`: a mission plan over N orbits: passes, eclipses, temperature and state-of-charge
//! extremes against their limits, the energy balance, and a plot.

use std::fmt;
use std::path::Path;

use plotters::prelude::*;

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

/// Minutes from the plan's start, for the report.
fn minutes(plan: &Plan, unix: f64) -> f64 {
    (unix - plan.start_unix) / 60.0
}

impl Plan {
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
                minutes(self, p.aos_unix),
                minutes(self, p.los_unix),
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
                minutes(self, *entry),
                minutes(self, *exit),
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

/// Plot one sample per minute: the integration step is finer than a plot needs.
const PLOT_EVERY: usize = (60.0 / STEP_S) as usize;

/// Writes the plot: temperatures and state of charge over time, eclipses shaded, passes marked.
pub fn write_svg(plan: &Plan, path: &Path) -> Result<(), String> {
    let plotted = || plan.samples.iter().step_by(PLOT_EVERY);
    let root = SVGBackend::new(path, (1200, 700)).into_drawing_area();
    let draw = |e: &dyn fmt::Display| format!("cannot draw `{}`: {e}", path.display());
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let (upper, lower) = root.split_vertically(460);
    let span_min = (plan.end_unix - plan.start_unix) / 60.0;
    let (t_min, t_max) = plan.nodes.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), n| {
        (lo.min(n.min_c).min(n.limits_c.0), hi.max(n.max_c).max(n.limits_c.1))
    });
    let mut chart = ChartBuilder::on(&upper)
        .caption(format!("{}: temperatures (GPU {:?})", plan.mission, plan.gpu), ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..span_min, (t_min - 5.0)..(t_max + 5.0))
        .map_err(|e| draw(&e))?;
    chart.configure_mesh().x_desc("minutes").y_desc("deg C").draw().map_err(|e| draw(&e))?;
    for (entry, exit) in plan.eclipse_intervals() {
        let (a, b) = (minutes(plan, entry), minutes(plan, exit));
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, t_min - 5.0), (b, t_max + 5.0)],
                RGBColor(225, 225, 235).filled(),
            )))
            .map_err(|e| draw(&e))?;
    }
    for p in &plan.passes {
        let (a, b) = (minutes(plan, p.aos_unix), minutes(plan, p.los_unix));
        chart
            .draw_series(std::iter::once(Rectangle::new([(a, t_max + 3.0), (b, t_max + 5.0)], GREEN.filled())))
            .map_err(|e| draw(&e))?;
    }
    let palette = [RED, BLUE, BLACK, MAGENTA, CYAN, RGBColor(200, 120, 0)];
    for (i, node) in plan.nodes.iter().enumerate() {
        let color = palette[i % palette.len()];
        chart
            .draw_series(LineSeries::new(
                plotted().map(|s| (minutes(plan, s.unix), s.temperatures_c[i])),
                color.stroke_width(2),
            ))
            .map_err(|e| draw(&e))?
            .label(node.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(|e| draw(&e))?;

    let mut soc = ChartBuilder::on(&lower)
        .caption("battery state of charge (eclipses shaded, passes in green above)", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..span_min, 0.0..100.0)
        .map_err(|e| draw(&e))?;
    soc.configure_mesh().x_desc("minutes").y_desc("%").draw().map_err(|e| draw(&e))?;
    soc.draw_series(LineSeries::new(plotted().map(|s| (minutes(plan, s.unix), s.soc * 100.0)), BLUE.stroke_width(2)))
        .map_err(|e| draw(&e))?;
    let limit = plan.min_soc_limit * 100.0;
    soc.draw_series(LineSeries::new([(0.0, limit), (span_min, limit)], RED)).map_err(|e| draw(&e))?;
    root.present().map_err(|e| draw(&e))
}
