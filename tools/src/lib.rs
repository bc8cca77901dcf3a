//! Kestrel's operator tools: what the ground does with the flight software's inputs before they
//! fly. Scoring a detector against labelled scenes, signing models, checking a model loads, and
//! framing packets as the link does. None of this runs on board, so its dependencies (an XML
//! reader for label files, a TOML editor for the manifest, a plotting library for the thermal
//! plan) stay out of the flight binary.

pub mod evaluate;
pub mod frame_file;
pub mod model_check;
pub mod scene_evaluation;
pub mod signing;
pub mod thermal_plot;
