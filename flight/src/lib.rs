//! Kestrel's on-board software. The `flight` binary is a thin shell over this library.
//! See ARCHITECTURE.md for the map of its modules.

pub mod checkpoint;
pub mod clock;
pub mod commands;
pub mod config;
pub mod contacts;
pub mod detect;
pub mod downlink;
pub mod fault_map;
pub mod georef;
pub mod health;
pub mod imagery;
pub mod mission_detector;
pub mod model_io;
pub mod models;
pub mod onnx_runtime;
pub mod pipeline;
pub mod products;
pub mod reference_data;
pub mod resident_weights;
pub mod resize;
pub mod schedule;
pub mod screen;
pub mod spool;
pub mod tile;
pub mod upload;
