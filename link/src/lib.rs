//! The space link between Kestrel's flight and ground segments, and the mission-file contract they share.
//!
//! `link` is the one crate that both `flight` and `ground` depend on; neither depends on the other.
//! See ARCHITECTURE.md for the map of its modules.

pub mod cli;
pub mod config;
pub mod mission;
