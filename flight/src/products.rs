//! What the pipeline sends down about a frame, and about itself: detections with lat/lon, image
//! chips around the best detections, a thumbnail with the frame's footprint, full-resolution tiles
//! on request, housekeeping and events. Frame products are a pure function of the frame (content,
//! capture time) and the model, with ids from the same, so a frame processed again after a crash
//! makes byte-identical products under the same ids, which the ground stores once.

use image::{ImageBuffer, Luma, Rgb};
use kestrel_link::product::{
    self, Body, Chip, Detection, Detections, Event, Kind, OrientedBox, Product, Severity, Thumbnail,
};

use crate::checkpoint::QueuedProduct;
use crate::detect::FrameDetection;
use crate::georef::GeoTransform;
use crate::imagery::Raster;
use crate::spool::stable_id;

/// Downlink priority of each kind: events and housekeeping first, chips last.
pub fn priority(kind: Kind) -> u8 {
    match kind {
        Kind::Event | Kind::CommandReport => 0,
        Kind::Housekeeping => 1,
        Kind::Detections => 2,
        Kind::Thumbnail => 3,
        Kind::Chip => 4,
    }
}

/// A product ready for the queue: encoded, its content CRC made now.
pub fn queued(product: &Product) -> QueuedProduct {
    let encoded = product.encode();
    QueuedProduct {
        id: encoded.id,
        priority: priority(encoded.kind),
        created_ms: product.created_ms,
        apid: encoded.kind.apid().value(),
        content_crc: encoded.content_crc,
        envelope: encoded.bytes,
        sent: None,
        read_fingerprint: None,
    }
}

/// Whether a product just made is as it was encoded: its content decompresses to the CRC made
/// with it, and its envelope's schema version is this build's and its id, kind and CRC the queue
/// entry's. Checked once, before it is queued (queued damaged, the ground would refuse it at every
/// resend); from then on its record's CRC in the checkpoint and
/// [`QueuedProduct::unchanged_since_read`] at each send cover it.
pub fn intact(product: &QueuedProduct) -> bool {
    product::Envelope::verify(&product.envelope).is_ok_and(|e| {
        e.version == product::SCHEMA_VERSION
            && e.id == product.id
            && e.kind.apid().value() == product.apid
            && e.content_crc == product.content_crc
    })
}

/// A frame as the product builders see it.
#[derive(Debug)]
pub struct FrameView<'a> {
    pub id: u64,
    pub time_ms: i64,
    pub raster: &'a Raster,
    pub georef: Option<&'a GeoTransform>,
    /// Scaling of the raster's bands onto 0..1 (the model's), used for the 8-bit renderings.
    pub ranges: &'a [(f32, f32)],
}

#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub chip_px: u32,
    pub max_chips: u32,
    pub thumbnail_px: u32,
}

/// An oriented detection as its product carries it.
pub fn oriented_box(detection: &crate::detect::OrientedDetection) -> OrientedBox {
    let b = detection.box_;
    let mut corners = [[f64::NAN; 2]; 4];
    for (corner, (lat, lon)) in corners.iter_mut().zip(detection.outline.iter().flatten()) {
        *corner = [*lat, *lon];
    }
    OrientedBox { pixel: [b.centre[0], b.centre[1], b.size[0], b.size[1], b.angle], corners }
}

/// The products of one processed frame: its detections, chips for the best ones, a thumbnail.
pub fn frame_products(frame: &FrameView<'_>, model: &str, detections: &[FrameDetection], sizes: Sizes) -> Vec<Product> {
    let id = |kind: &str, index: u32| stable_id(&[&frame.id.to_be_bytes(), kind.as_bytes(), &index.to_be_bytes()]);
    let mut out = vec![Product {
        id: id("detections", 0),
        created_ms: frame.time_ms,
        body: Body::Detections(Detections {
            frame_id: frame.id,
            frame_time_ms: frame.time_ms,
            model: model.to_owned(),
            detections: detections
                .iter()
                .map(|d| {
                    let (latitude, longitude) = d.lat_lon.unwrap_or((f64::NAN, f64::NAN));
                    Detection {
                        class_id: d.class_id as u16,
                        class_name: d.class_name.clone(),
                        score: d.score,
                        pixel_box: d.pixel_box,
                        latitude,
                        longitude,
                    }
                })
                .collect(),
            oriented: detections
                .iter()
                .map(|d| d.rotated.as_ref().map(oriented_box))
                .collect::<Option<_>>()
                .unwrap_or_default(),
        }),
    }];
    let mut best: Vec<(usize, &FrameDetection)> = detections.iter().enumerate().collect();
    best.sort_by(|a, b| b.1.score.total_cmp(&a.1.score).then(a.0.cmp(&b.0)));
    for (index, detection) in best.into_iter().take(sizes.max_chips as usize) {
        let b = detection.pixel_box;
        let centre = [((b[0] + b[2]) / 2.0) as i64, ((b[1] + b[3]) / 2.0) as i64];
        let (origin, size) = chip_window(frame.raster, centre, sizes.chip_px);
        out.push(Product {
            id: id("chip", index as u32),
            created_ms: frame.time_ms,
            body: Body::Chip(Chip {
                frame_id: frame.id,
                detection_index: index as u32,
                origin,
                size,
                png: render_rgb8(frame.raster, frame.ranges, origin, size, 1),
            }),
        });
    }
    let step = frame.raster.width.max(frame.raster.height).div_ceil(sizes.thumbnail_px).max(1);
    let footprint = frame
        .georef
        .and_then(|g| g.footprint(frame.raster.width, frame.raster.height).ok())
        .unwrap_or([[f64::NAN; 2]; 4]);
    out.push(Product {
        id: id("thumbnail", 0),
        created_ms: frame.time_ms,
        body: Body::Thumbnail(Thumbnail {
            frame_id: frame.id,
            frame_time_ms: frame.time_ms,
            footprint,
            png: render_rgb8(frame.raster, frame.ranges, [0, 0], [frame.raster.width, frame.raster.height], step),
        }),
    });
    out
}

/// A full-resolution tile of a frame, its samples as they are (16-bit PNG, up to three bands).
/// The window is clipped to the frame; `None` if nothing of it is inside.
pub fn requested_tile(frame: &FrameView<'_>, window: [u32; 4]) -> Option<Product> {
    let [x, y, w, h] = window;
    let (x1, y1) = (x.saturating_add(w).min(frame.raster.width), y.saturating_add(h).min(frame.raster.height));
    if x >= x1 || y >= y1 {
        return None;
    }
    let (origin, size) = ([x, y], [x1 - x, y1 - y]);
    let raster = frame.raster;
    let sample = |px: u32, py: u32, b: usize| {
        raster.sample(((py as usize) * raster.width as usize + px as usize) * raster.bands + b)
    };
    let png = if raster.bands >= 3 {
        let image = ImageBuffer::from_fn(size[0], size[1], |i, j| Rgb([0, 1, 2].map(|b| sample(x + i, y + j, b))));
        png_bytes(&image::DynamicImage::ImageRgb16(image))
    } else {
        let image = ImageBuffer::from_fn(size[0], size[1], |i, j| Luma([sample(x + i, y + j, 0)]));
        png_bytes(&image::DynamicImage::ImageLuma16(image))
    };
    let id = stable_id(&[
        &frame.id.to_be_bytes(),
        b"tile",
        &origin[0].to_be_bytes(),
        &origin[1].to_be_bytes(),
        &size[0].to_be_bytes(),
        &size[1].to_be_bytes(),
    ]);
    Some(Product {
        id,
        created_ms: frame.time_ms,
        body: Body::Chip(Chip { frame_id: frame.id, detection_index: Chip::REQUESTED_TILE, origin, size, png }),
    })
}

/// An event product. Its id comes from `sequence` (from the checkpoint) and its content, so it
/// stays unique even when a corrupt checkpoint is rebuilt and the sequence starts again.
pub fn event(sequence: u64, time_ms: i64, severity: Severity, source: &str, message: String) -> Product {
    let body = Body::Event(Event { time_ms, severity, source: source.to_owned(), message });
    record(b"event", sequence, time_ms, body)
}

/// A command's verification report, its id made like an event's.
pub fn command_report(sequence: u64, report: product::CommandReport) -> Product {
    let time_ms = report.time_ms;
    record(b"command-report", sequence, time_ms, Body::CommandReport(report))
}

/// A housekeeping product, its id made like an event's.
pub fn housekeeping(sequence: u64, time_ms: i64, values: Vec<(String, f64)>) -> Product {
    record(b"housekeeping", sequence, time_ms, Body::Housekeeping(product::Housekeeping { time_ms, values }))
}

fn record(kind: &[u8], sequence: u64, time_ms: i64, body: Body) -> Product {
    // every product body serializes
    let content = postcard::to_stdvec(&body).unwrap_or_default();
    Product { id: stable_id(&[kind, &sequence.to_be_bytes(), &content]), created_ms: time_ms, body }
}

/// A `side`-pixel window around `centre`, moved inside the frame (smaller if the frame is).
fn chip_window(raster: &Raster, centre: [i64; 2], side: u32) -> ([u32; 2], [u32; 2]) {
    let size = [side.min(raster.width), side.min(raster.height)];
    let place = |c: i64, s: u32, limit: u32| (c - i64::from(s) / 2).clamp(0, i64::from(limit - s)) as u32;
    ([place(centre[0], size[0], raster.width), place(centre[1], size[1], raster.height)], size)
}

/// An 8-bit PNG of a window (every `step`th pixel): the first three bands as RGB (or the first as
/// grey), each scaled by its range.
fn render_rgb8(raster: &Raster, ranges: &[(f32, f32)], origin: [u32; 2], size: [u32; 2], step: u32) -> Vec<u8> {
    let (w, h) = (size[0].div_ceil(step), size[1].div_ceil(step));
    let channels: Vec<usize> = if raster.bands >= 3 { vec![0, 1, 2] } else { vec![0, 0, 0] };
    let image = ImageBuffer::from_fn(w, h, |i, j| {
        let (x, y) = (origin[0] + i * step, origin[1] + j * step);
        let base = ((y as usize) * raster.width as usize + x as usize) * raster.bands;
        Rgb(std::array::from_fn(|c| {
            let band = channels[c];
            let (low, high) = ranges.get(band).copied().unwrap_or((0.0, 65535.0));
            let value = (f32::from(raster.sample(base + band)) - low) / (high - low).max(f32::EPSILON);
            (value.clamp(0.0, 1.0) * 255.0).round() as u8
        }))
    });
    png_bytes(&image::DynamicImage::ImageRgb8(image))
}

fn png_bytes(image: &image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    // writing a PNG into memory fails only on allocation failure
    let _ = image.write_to(&mut out, image::ImageFormat::Png);
    out.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imagery::Samples;

    fn raster() -> Raster {
        let samples = (0..100u32 * 80 * 3).map(|i| (i % 4096) as u16).collect();
        Raster { width: 100, height: 80, bands: 3, samples: Samples::U16(samples) }
    }

    fn detection(score: f32, x: f32) -> FrameDetection {
        FrameDetection {
            class_id: 0,
            class_name: "vessel".into(),
            score,
            pixel_box: [x, 10.0, x + 8.0, 18.0],
            lat_lon: Some((1.0, 2.0)),
            rotated: None,
        }
    }

    #[test]
    fn a_bit_flipped_anywhere_in_a_queued_product_fails_its_check_or_changes_nothing() {
        let raster = raster();
        let ranges = [(0.0, 4095.0); 3];
        let frame = FrameView { id: 77, time_ms: 1_000, raster: &raster, georef: None, ranges: &ranges };
        let sizes = Sizes { chip_px: 32, max_chips: 2, thumbnail_px: 25 };
        for made in frame_products(&frame, "m", &[detection(0.9, 40.0)], sizes) {
            let product = queued(&made);
            assert!(intact(&product));
            // a flip either fails the check or changes nothing the ground would store (zstd
            // ignores a few header bits)
            for bit in 0..product.envelope.len() * 8 {
                let mut upset = product.clone();
                upset.envelope[bit / 8] ^= 1 << (bit % 8);
                let harmless = Product::decode(&upset.envelope).is_ok_and(|p| p.encode() == made.encode());
                assert!(!intact(&upset) || harmless, "{:?}: bit {bit} of {}", made.body.kind(), product.envelope.len());
            }
        }
    }

    #[test]
    fn frame_products_are_the_same_every_time_and_chips_go_to_the_best() {
        let raster = raster();
        let ranges = [(0.0, 4095.0); 3];
        let frame = FrameView { id: 77, time_ms: 1_000, raster: &raster, georef: None, ranges: &ranges };
        let detections = [detection(0.3, 5.0), detection(0.9, 90.0), detection(0.6, 40.0)];
        let sizes = Sizes { chip_px: 32, max_chips: 2, thumbnail_px: 25 };
        let first = frame_products(&frame, "m", &detections, sizes);
        // compared as bytes: the footprint of a frame without georeferencing is NaN
        let encoded = |products: &[Product]| products.iter().map(Product::encode).collect::<Vec<_>>();
        assert_eq!(encoded(&first), encoded(&frame_products(&frame, "m", &detections, sizes)), "byte-identical");
        let chips: Vec<&Chip> =
            first.iter().filter_map(|p| if let Body::Chip(c) = &p.body { Some(c) } else { None }).collect();
        assert_eq!(chips.iter().map(|c| c.detection_index).collect::<Vec<_>>(), [1, 2]);
        // the chip of the box at x=90 is moved inside the frame
        assert_eq!((chips[0].origin, chips[0].size), ([68, 0], [32, 32]));
        let Some(Body::Thumbnail(thumbnail)) = first.last().map(|p| &p.body) else { panic!("thumbnail last") };
        let image = image::load_from_memory(&thumbnail.png).expect("png");
        assert_eq!((image.width(), image.height()), (25, 20));
        let ids: std::collections::BTreeSet<u64> = first.iter().map(|p| p.id).collect();
        assert_eq!(ids.len(), first.len(), "ids are distinct");
    }

    #[test]
    fn a_requested_tile_keeps_the_samples_and_is_clipped_to_the_frame() {
        let raster = raster();
        let ranges = [(0.0, 4095.0); 3];
        let frame = FrameView { id: 5, time_ms: 0, raster: &raster, georef: None, ranges: &ranges };
        let product = requested_tile(&frame, [90, 70, 50, 50]).expect("inside");
        let Body::Chip(chip) = &product.body else { panic!("a chip") };
        assert_eq!((chip.origin, chip.size, chip.detection_index), ([90, 70], [10, 10], Chip::REQUESTED_TILE));
        let image = image::load_from_memory(&chip.png).expect("png").into_rgb16();
        assert_eq!(image.get_pixel(0, 0).0[1], raster.sample((70 * 100 + 90) * 3 + 1));
        assert!(requested_tile(&frame, [100, 0, 5, 5]).is_none());
    }
}
