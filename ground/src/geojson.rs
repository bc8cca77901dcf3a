//! Detections as GeoJSON (RFC 7946): a FeatureCollection of points at each detection's centre,
//! or, for an oriented box placed on the Earth, the polygon of its corners; longitude first, with
//! what an analyst filters on as properties.

use serde_json::{Value, json};

use kestrel_link::product::OrientedBox;

use crate::archive::DetectionRecord;

pub fn feature_collection(detections: &[DetectionRecord]) -> Value {
    let features: Vec<Value> = detections
        .iter()
        .map(|d| {
            let geometry = match d.oriented.as_ref().and_then(OrientedBox::ring) {
                Some(ring) => json!({ "type": "Polygon", "coordinates": [ring] }),
                None => json!({ "type": "Point", "coordinates": [d.longitude, d.latitude] }),
            };
            json!({
                "type": "Feature",
                "geometry": geometry,
                "properties": {
                    "product_id": d.product_id,
                    "frame_id": d.frame_id,
                    "frame_time_ms": d.frame_time_ms,
                    "model": d.model,
                    "class": d.class_name,
                    "score": d.score,
                    "pixel_box": d.pixel_box,
                    "oriented_box": d.oriented.map(|o| o.pixel),
                },
            })
        })
        .collect();
    json!({ "type": "FeatureCollection", "features": features })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(oriented: Option<OrientedBox>) -> DetectionRecord {
        DetectionRecord {
            product_id: 1,
            index: 0,
            frame_id: 2,
            frame_time_ms: 3,
            model: "ships-obb".into(),
            class_name: "ship".into(),
            score: 0.9,
            pixel_box: [0.0, 0.0, 10.0, 10.0],
            latitude: 33.6,
            longitude: -7.6,
            oriented,
        }
    }

    #[test]
    fn an_oriented_box_on_the_earth_is_a_closed_counterclockwise_polygon_and_others_are_points() {
        // clockwise seen from above (north up): NW, NE, SE, SW
        let corners = [[33.61, -7.61], [33.61, -7.59], [33.59, -7.59], [33.59, -7.61]];
        let oriented = OrientedBox { pixel: [5.0, 5.0, 10.0, 4.0, 0.3], corners };
        let collection = feature_collection(&[record(Some(oriented)), record(None)]);
        let polygon = &collection["features"][0]["geometry"];
        assert_eq!(polygon["type"], "Polygon");
        let ring: Vec<[f64; 2]> = serde_json::from_value(polygon["coordinates"][0].clone()).expect("a ring");
        assert_eq!((ring.len(), ring[0]), (5, ring[4]));
        let twice_area: f64 = (0..4).map(|i| ring[i][0] * ring[i + 1][1] - ring[i + 1][0] * ring[i][1]).sum();
        assert!(twice_area > 0.0, "counterclockwise: {ring:?}");
        assert_eq!(collection["features"][0]["properties"]["oriented_box"][4].as_f64(), Some(0.30000001192092896));
        assert_eq!(collection["features"][1]["geometry"]["type"], "Point");
        // corners not on the Earth (an image without georeferencing): the centre point
        let unplaced = OrientedBox { corners: [[f64::NAN; 2]; 4], ..oriented };
        assert_eq!(feature_collection(&[record(Some(unplaced))])["features"][0]["geometry"]["type"], "Point");
    }
}
