//! Kestrel's fault-injection harness. The `radiation-sim` binary is a thin shell over this library.
//! See ARCHITECTURE.md for the map of its modules.

pub mod campaign;
pub mod config;
pub mod inject;
pub mod plan;
pub mod plot;
pub mod proxy;
pub mod report;
pub mod stations;
pub mod supervisor;
