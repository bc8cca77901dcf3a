//! The space link between Kestrel's flight and ground segments: the protocol and nothing else.
//!
//! `link` is the one crate that both `flight` and `ground` depend on; neither depends on the other.
//! See ARCHITECTURE.md for the map of its modules and docs/ICD.md for the wire formats.

pub mod coding;
pub mod decoder;
pub mod encoder;
pub mod fecf;
pub mod frame;
pub mod hex;
pub mod mpdu;
pub mod noise;
pub mod packet;
pub mod product;
pub mod profile;
pub mod randomizer;
pub mod reed_solomon;
pub mod security;
pub mod spacecraft;
pub mod station;
pub mod sync;
pub mod telecommand;
pub mod uplink;
