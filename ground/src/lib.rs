//! Kestrel's ground station. The `ground` binary is a thin shell over this library.
//! See ARCHITECTURE.md for the map of its modules.

pub mod archive;
pub mod config;
pub mod console;
pub mod decode_file;
pub mod geojson;
pub mod http;
pub mod http_server;
pub mod ingest;
pub mod openapi;
pub mod operators;
pub mod predict;
pub mod serve;
pub mod verification;
