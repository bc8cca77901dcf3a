//! Detections as GeoJSON (RFC 7946): a FeatureCollection of points at each detection's centre,
//! longitude first, with what an analyst filters on as properties.

use serde_json::{Value, json};

use crate::archive::DetectionRecord;

pub fn feature_collection(detections: &[DetectionRecord]) -> Value {
    let features: Vec<Value> = detections
        .iter()
        .map(|d| {
            json!({
                "type": "Feature",
                "geometry": { "type": "Point", "coordinates": [d.longitude, d.latitude] },
                "properties": {
                    "product_id": d.product_id,
                    "frame_id": d.frame_id,
                    "frame_time_ms": d.frame_time_ms,
                    "model": d.model,
                    "class": d.class_name,
                    "score": d.score,
                    "pixel_box": d.pixel_box,
                },
            })
        })
        .collect();
    json!({ "type": "FeatureCollection", "features": features })
}
