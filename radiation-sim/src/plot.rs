//! The campaign report's plot (SVG, beside the JSON): each fault kind's outcomes as shares of its
//! injections, and every injection on a timeline, coloured by its outcome.

use std::path::Path;

use plotters::prelude::*;

use crate::report::{Outcome, Report};

fn colour(outcome: Outcome) -> RGBColor {
    match outcome {
        Outcome::Masked => RGBColor(170, 170, 170),
        Outcome::DetectedCorrected => RGBColor(60, 140, 60),
        Outcome::DetectedRecovered => RGBColor(50, 100, 200),
        Outcome::MaskedOrSilent => RGBColor(230, 150, 0),
        Outcome::Unrecovered => RGBColor(210, 30, 30),
        Outcome::NotInjected => RGBColor(235, 235, 235),
    }
}

/// Writes the plot of `report` to `path`.
pub fn write_svg(report: &Report, path: &Path) -> Result<(), String> {
    let draw = |e: &dyn std::fmt::Display| format!("cannot draw `{}`: {e}", path.display());
    let kinds: Vec<&String> = report.outcomes.keys().collect();
    let rows = kinds.len().max(1);
    // the lower panel also holds the legend: six entries
    let (upper_height, lower_height) = (80 + 34 * rows as u32, (80 + 34 * rows as u32).max(230));
    let root = SVGBackend::new(path, (1100, upper_height + lower_height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw(&e))?;
    let (upper, lower) = root.split_vertically(upper_height);
    let invariants = if report.passed() { "invariants: all held".to_owned() } else { report.broken.join("; ") };
    let mut shares = ChartBuilder::on(&upper)
        .caption(format!("outcomes per fault kind (seed {}; {invariants})", report.seed), ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(150)
        .build_cartesian_2d(0.0..100.0, 0.0..rows as f64)
        .map_err(|e| draw(&e))?;
    let label = |y: &f64| kinds.get(*y as usize).map_or(String::new(), |k| k.to_string());
    shares
        .configure_mesh()
        .disable_y_mesh()
        .label_style(("sans-serif", 13))
        .y_labels(rows * 2 + 1)
        .y_label_formatter(&|y| if y.fract() == 0.5 { label(y) } else { String::new() })
        .x_desc("% of injections")
        .draw()
        .map_err(|e| draw(&e))?;
    for (row, kind) in kinds.iter().enumerate() {
        let counts = &report.outcomes[*kind];
        let total = counts.values().sum::<usize>().max(1) as f64;
        let mut from = 0.0;
        for outcome in Outcome::ALL {
            let share = 100.0 * counts.get(&outcome).copied().unwrap_or(0) as f64 / total;
            if share > 0.0 {
                let y = row as f64;
                shares
                    .draw_series(std::iter::once(Rectangle::new(
                        [(from, y + 0.15), (from + share, y + 0.85)],
                        colour(outcome).filled(),
                    )))
                    .map_err(|e| draw(&e))?;
                from += share;
            }
        }
    }
    let span = report.injections.iter().map(|i| i.at_s).fold(1.0, f64::max) * 1.02;
    let mut timeline = ChartBuilder::on(&lower)
        .caption("every injection over the campaign", ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(150)
        .build_cartesian_2d(0.0..span, 0.0..rows as f64)
        .map_err(|e| draw(&e))?;
    timeline
        .configure_mesh()
        .disable_y_mesh()
        .label_style(("sans-serif", 13))
        .y_labels(rows * 2 + 1)
        .y_label_formatter(&|y| if y.fract() == 0.5 { label(y) } else { String::new() })
        .x_desc("seconds")
        .draw()
        .map_err(|e| draw(&e))?;
    for outcome in Outcome::ALL {
        let points: Vec<(f64, f64)> = report
            .injections
            .iter()
            .filter(|i| i.outcome == outcome)
            .filter_map(|i| kinds.iter().position(|k| **k == i.kind).map(|row| (i.at_s, row as f64 + 0.5)))
            .collect();
        timeline
            .draw_series(points.into_iter().map(|p| Circle::new(p, 3, colour(outcome).filled())))
            .map_err(|e| draw(&e))?
            .label(outcome.label())
            .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 10, y + 4)], colour(outcome).filled()));
    }
    timeline
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(|e| draw(&e))?;
    root.present().map_err(|e| draw(&e))
}
