//! The scheduler's one-day evaluation (issue 7): greedy, the best fixed duty cycle, flight's
//! scheduler and the offline optimum on the same frames. Prints the table docs/scheduler.md
//! carries and writes the plot.
//!
//! `cargo bench -p kestrel-e2e --bench scheduler_day [-- --hours H --seed N --svg FILE --mission FILE]`

use std::path::PathBuf;

use kestrel_e2e::scheduler_day::{Workload, evaluate, write_svg};

fn main() {
    let mut workload = Workload::default();
    let root = kestrel_e2e::workspace_root();
    let mut svg = root.join("docs/scheduler-day.svg");
    let mut mission = root.join("mission.toml");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--hours" => workload.hours = value("--hours").parse().expect("--hours: a number"),
            "--seed" => workload.seed = value("--seed").parse().expect("--seed: an integer"),
            "--svg" => svg = PathBuf::from(value("--svg")),
            "--mission" => mission = PathBuf::from(value("--mission")),
            _ => {} // cargo bench passes --bench
        }
    }
    let evaluation = match evaluate(&mission, workload) {
        Ok(evaluation) => evaluation,
        Err(e) => {
            eprintln!("scheduler_day: {e}");
            std::process::exit(1);
        }
    };
    println!("{evaluation}");
    if let Err(e) = write_svg(&evaluation, 80.0, &svg) {
        eprintln!("scheduler_day: {e}");
        std::process::exit(1);
    }
    println!("plot: {}", svg.display());
}
