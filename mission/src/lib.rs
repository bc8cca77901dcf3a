//! The mission file and the command-line conventions every Kestrel binary shares.
//!
//! The mission file (`mission.toml`) is the one static declaration of a mission. This crate reads
//! it and locates every mistake (file, line, column, dotted key); each crate owns the schema of its
//! own section. The `[link]` section lives here rather than in the protocol crate so that the
//! decoder (`kestrel-link`, fuzzed) depends on no TOML, command-line or logging library.

pub mod cli;
mod file;
pub mod link;

pub use file::{MissionError, MissionFile, MissionInfo, SECTIONS};
