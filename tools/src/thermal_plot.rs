//! The thermal plan's plot (`thermal plan --plot`): temperatures and state of charge over time,
//! eclipses shaded, passes marked.

use std::fmt;
use std::path::Path;

use kestrel_thermal::plan::{self, Plan};
use plotters::prelude::*;

/// Plot one sample per minute: the integration step is finer than a plot needs.
const PLOT_EVERY: usize = (60.0 / plan::STEP_S) as usize;

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
        let (a, b) = (plan.minutes(entry), plan.minutes(exit));
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, t_min - 5.0), (b, t_max + 5.0)],
                RGBColor(225, 225, 235).filled(),
            )))
            .map_err(|e| draw(&e))?;
    }
    for p in &plan.passes {
        let (a, b) = (plan.minutes(p.aos_unix), plan.minutes(p.los_unix));
        chart
            .draw_series(std::iter::once(Rectangle::new([(a, t_max + 3.0), (b, t_max + 5.0)], GREEN.filled())))
            .map_err(|e| draw(&e))?;
    }
    let palette = [RED, BLUE, BLACK, MAGENTA, CYAN, RGBColor(200, 120, 0)];
    for (i, node) in plan.nodes.iter().enumerate() {
        let color = palette[i % palette.len()];
        chart
            .draw_series(LineSeries::new(
                plotted().map(|s| (plan.minutes(s.unix), s.temperatures_c[i])),
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
    soc.draw_series(LineSeries::new(plotted().map(|s| (plan.minutes(s.unix), s.soc * 100.0)), BLUE.stroke_width(2)))
        .map_err(|e| draw(&e))?;
    let limit = plan.min_soc_limit * 100.0;
    soc.draw_series(LineSeries::new([(0.0, limit), (span_min, limit)], RED)).map_err(|e| draw(&e))?;
    root.present().map_err(|e| draw(&e))
}
