//! A test hook for the fault injector (`radiation-sim`): with `KESTREL_FAULT_MAP` set in the
//! environment, flight writes where its critical buffers are (`<state_dir>/fault-map`, one
//! `NAME ADDRESS BYTES` line each) so that upsets can be aimed at them. Without the variable it
//! writes nothing; addresses are no secret worth more than that on a spacecraft, but nothing
//! needs them outside a campaign.

use std::path::Path;

const FILE: &str = "fault-map";
const ENABLE: &str = "KESTREL_FAULT_MAP";

/// Publishes `regions` (name, address, bytes), replacing what was there.
pub fn publish(state_dir: &Path, regions: &[(&str, (usize, usize))]) {
    if std::env::var_os(ENABLE).is_none() {
        return;
    }
    let text: String =
        regions.iter().map(|(name, (address, bytes))| format!("{name} {address:#x} {bytes}\n")).collect();
    let temporary = state_dir.join("fault-map.new");
    if std::fs::write(&temporary, text).and_then(|()| std::fs::rename(&temporary, state_dir.join(FILE))).is_err() {
        tracing::warn!("cannot write the fault map");
    }
}

/// The buffers are gone: nothing to aim at.
pub fn clear(state_dir: &Path) {
    if std::env::var_os(ENABLE).is_some() {
        let _ = std::fs::remove_file(state_dir.join(FILE));
    }
}
