//! Kestrel's orbit, thermal and power model. The `thermal` binary is a thin shell over this library.
//! See ARCHITECTURE.md for the map of its modules.

pub mod config;
pub mod events;
pub mod network;
pub mod orbit;
pub mod plan;
pub mod power;
pub mod simulate;
pub mod sun;
