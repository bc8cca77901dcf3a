//! Kestrel's on-board software. The `flight` binary is a thin shell over this library.
//! See ARCHITECTURE.md for the map of its modules.

pub mod config;
pub mod detect;
pub mod evaluate;
pub mod frame_file;
pub mod georef;
pub mod imagery;
pub mod mission_detector;
pub mod model_check;
pub mod models;
pub mod onnx_runtime;
pub mod tile;
