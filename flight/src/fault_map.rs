//! Test hooks for the fault injector (`radiation-sim`), live only with `KESTREL_FAULT_MAP` set in
//! the environment: flight writes where its critical buffers are (`<state_dir>/fault-map`, one
//! `NAME ADDRESS BYTES` line each) so that upsets can be aimed at them, and its simulated plant
//! takes thermal and power excursions from `<state_dir>/plant-faults`. Without the variable it
//! does neither: nothing outside a campaign needs them.

use std::path::Path;

const FILE: &str = "fault-map";
const ENABLE: &str = "KESTREL_FAULT_MAP";

/// Whether this process runs under a campaign (`KESTREL_FAULT_MAP` set when it started).
pub fn enabled() -> bool {
    static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os(ENABLE).is_some())
}

/// Publishes `regions` (name, address, bytes), replacing what was there.
pub fn publish(state_dir: &Path, regions: &[(&str, (usize, usize))]) {
    if !enabled() {
        return;
    }
    let text: String =
        regions.iter().map(|(name, (address, bytes))| format!("{name} {address:#x} {bytes}\n")).collect();
    let temporary = state_dir.join("fault-map.new");
    if std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, state_dir.join(FILE))).is_err() {
        tracing::warn!("cannot write the fault map");
    }
}

/// How long a batch of products stays in memory between leaving the queue and being framed,
/// under a campaign: on a spacecraft the radio holds it while it transmits (loopback takes no
/// time at all), and the fault injector needs that window to aim at it.
const TRANSMISSION_WINDOW: std::time::Duration = std::time::Duration::from_millis(20);
/// The injector's word that it has upset what the fault map named (so the window can close).
const INJECTED: &str = "fault-injected";

/// Waits for the transmission window (campaigns only): until the injector says it has upset the
/// batch, or the window's time is up.
pub fn transmission_window(state_dir: &Path) {
    if !enabled() {
        return;
    }
    let injected = state_dir.join(INJECTED);
    let until = std::time::Instant::now() + TRANSMISSION_WINDOW;
    while std::time::Instant::now() < until {
        if std::fs::remove_file(&injected).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

const PLANT_FAULTS: &str = "plant-faults";

/// A thermal or power excursion the fault injector asks the simulated plant to suffer once.
#[derive(Debug, Clone, PartialEq)]
pub enum PlantFault {
    /// Node `name` suddenly `kelvin` hotter (a hot radiator, a heater stuck on).
    Heat { node: String, kelvin: f64 },
    /// The battery loses this fraction of its charge (a dead cell).
    Discharge { fraction: f64 },
}

/// The excursions the injector left in `<state_dir>/plant-faults` (`heat NODE KELVIN` or
/// `discharge FRACTION` lines), taken once; none without `KESTREL_FAULT_MAP`.
pub fn take_plant_faults(state_dir: &Path) -> Vec<PlantFault> {
    if !enabled() {
        return Vec::new();
    }
    let path = state_dir.join(PLANT_FAULTS);
    let Ok(text) = std::fs::read_to_string(&path) else { return Vec::new() };
    let _ = std::fs::remove_file(&path);
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["heat", node, kelvin] => {
                    Some(PlantFault::Heat { node: (*node).to_owned(), kelvin: kelvin.parse().ok()? })
                }
                ["discharge", fraction] => Some(PlantFault::Discharge { fraction: fraction.parse().ok()? }),
                _ => {
                    tracing::warn!("plant fault `{line}` not understood");
                    None
                }
            }
        })
        .collect()
}
