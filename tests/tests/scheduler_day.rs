//! Issue 7's target for the scheduler: over one simulated day of the reference mission, flight's
//! scheduler captures at least 95 % of the offline optimum's value with no limit violated, where
//! always running violates the payload's limit and the best fixed duty cycle captures less.

use kestrel_e2e::scheduler_day::{Workload, evaluate};

#[test]
fn the_scheduler_gets_within_5_percent_of_the_optimum_without_a_violation() {
    let scratch = kestrel_e2e::Scratch::new();
    let mission = scratch.mission_with("[flight.schedule]", "[flight.schedule]");
    let day = evaluate(&mission, Workload::default()).expect("the evaluation runs");
    println!("{day}");
    let (ours, optimum) = (&day.ours, &day.optimum);
    assert_eq!(ours.violation_s, 0.0, "flight's scheduler left a limit: {:?}", ours.worst);
    assert!(day.share_of_optimum() >= 0.95, "{:.3} of the optimum", day.share_of_optimum());
    assert!(ours.value <= optimum.bound, "the bound bounds: {} > {}", ours.value, optimum.bound);
    // the bracket around the optimum is real: its replay keeps the limits, and is below the bound
    assert_eq!(optimum.replay.violation_s, 0.0, "the optimum's replay left a limit: {:?}", optimum.replay.worst);
    assert!(optimum.replay.value <= optimum.bound * (1.0 + 1e-6));
    assert!(optimum.model_error_k < 0.5, "the linearised plant is off by {} K", optimum.model_error_k);
    // the baselines: the workload is more than the radiator can take
    assert!(day.greedy.violation_s > 3600.0, "always running should overheat the payload");
    assert!(day.greedy.max_payload_c > 80.0);
    assert_eq!(day.fixed.violation_s, 0.0);
    assert!(day.fixed.value < ours.value, "the tuned fixed duty cycle {} vs ours {}", day.fixed.value, ours.value);
    // every frame's tiles are accounted for: run, or screened only at their deadline, or waiting at the end
    let tiles: f64 = day.frames as f64 * day.workload.tiles_per_frame;
    assert!(ours.tiles_run + ours.tiles_screened_only <= tiles + 1e-6);
    assert!(ours.tiles_run > 0.7 * tiles, "{} of {tiles}", ours.tiles_run);
}

#[test]
fn a_scheduler_with_no_margin_is_still_held_to_the_limits_by_its_forecast() {
    let scratch = kestrel_e2e::Scratch::new();
    let mission = scratch.mission_with("margin_c = 1.0", "margin_c = 0.0");
    let day = evaluate(&mission, Workload { hours: 8.0, ..Workload::default() }).expect("the evaluation runs");
    assert_eq!(day.ours.violation_s, 0.0, "{:?}", day.ours.worst);
    assert!(day.ours.max_payload_c > 79.5, "with no margin it rides the limit: {}", day.ours.max_payload_c);
}

#[test]
fn with_a_small_battery_the_scheduler_keeps_the_state_of_charge_where_greedy_does_not() {
    let scratch = kestrel_e2e::Scratch::new();
    let mission = scratch.mission_with("battery_capacity_wh = 400.0", "battery_capacity_wh = 120.0");
    let day = evaluate(&mission, Workload { hours: 8.0, ..Workload::default() }).expect("the evaluation runs");
    println!("{day}");
    assert!(day.greedy.min_soc < 0.30, "always running should drain the battery: {}", day.greedy.min_soc);
    assert_eq!(day.ours.violation_s, 0.0, "{:?}", day.ours.worst);
    assert!(day.ours.min_soc >= 0.30, "{}", day.ours.min_soc);
}
