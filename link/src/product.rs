//! Product payloads: a versioned schema serialized with `postcard` (a stable, specified wire
//! format), compressed with `zstd`, behind an envelope that carries the schema version, the kind,
//! the product's stable id and a CRC-32 of the content made when the product was created.
//!
//! ```text
//! envelope: "KP" | schema version u16 | kind u8 | product id u64 | CRC-32 of the postcard bytes u32 | zstd(postcard(Product))
//! ```
//! All integers big-endian. A receiver checks the CRC after decompression, so corruption anywhere
//! between creation on board and the archive on the ground is caught.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};

use crate::packet::Apid;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u16 = 2;
const MAGIC: &[u8; 2] = b"KP";
/// Envelope bytes before the compressed content.
pub const ENVELOPE_LEN: usize = 2 + 2 + 1 + 8 + 4;
/// Largest decompressed product accepted: bounds memory whatever arrives.
pub const MAX_CONTENT_LEN: usize = 64 << 20;
const ZSTD_LEVEL: i32 = 3;
/// The content CRC: CRC-32 (ISO-HDLC, the one zlib and Ethernet use), with `crc32fast`'s carry-less
/// multiplication (about 28 GB/s here against 5 for a slice-by-16 table; the ground checks every
/// product's content).
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// What a product is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Kind {
    Detections = 1,
    Chip = 2,
    Thumbnail = 3,
    Housekeeping = 4,
    Event = 5,
    CommandReport = 6,
}

impl Kind {
    pub const ALL: [Self; 6] =
        [Self::Detections, Self::Chip, Self::Thumbnail, Self::Housekeeping, Self::Event, Self::CommandReport];

    pub fn from_byte(byte: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == byte)
    }

    /// The APID products of this kind travel on.
    pub fn apid(self) -> Apid {
        match self {
            Self::Detections => Apid::Detections,
            Self::Chip => Apid::Chip,
            Self::Thumbnail => Apid::Thumbnail,
            Self::Housekeeping => Apid::Housekeeping,
            Self::Event => Apid::Event,
            Self::CommandReport => Apid::CommandReport,
        }
    }
}

/// One detection in a frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub class_id: u16,
    pub class_name: String,
    pub score: f32,
    /// Pixel box in the frame: x min, y min, x max, y max.
    pub pixel_box: [f32; 4],
    /// WGS84 latitude and longitude of the box centre, degrees.
    pub latitude: f64,
    pub longitude: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detections {
    pub frame_id: u64,
    /// Capture time of the frame, milliseconds since the Unix epoch (UTC).
    pub frame_time_ms: i64,
    pub model: String,
    pub detections: Vec<Detection>,
    /// From a model of oriented boxes, each detection's, in order; empty otherwise. Last in the
    /// product, so that a schema-1 product is a schema-2 one with this list empty.
    pub oriented: Vec<OrientedBox>,
}

/// An oriented detection's box.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OrientedBox {
    /// Centre x, y and size (long side first) in frame pixels, and the rotation in radians
    /// (0..π, clockwise in image axes), as Ultralytics' `xywhr`.
    pub pixel: [f32; 5],
    /// WGS84 latitude and longitude of its corners, going round the box; NaN where the frame is
    /// not georeferenced.
    pub corners: [[f64; 2]; 4],
}

impl OrientedBox {
    /// The closed ring of its corners, `[longitude, latitude]`, counterclockwise (GeoJSON's
    /// right-hand rule, RFC 7946); `None` when the corners are not on the Earth.
    pub fn ring(&self) -> Option<Vec<[f64; 2]>> {
        let mut ring: Vec<[f64; 2]> = self.corners.iter().map(|[lat, lon]| [*lon, *lat]).collect();
        if ring.iter().flatten().any(|v| !v.is_finite()) {
            return None;
        }
        // the shoelace sum is positive for a counterclockwise ring
        let twice_area: f64 =
            (0..4).map(|i| ring[i][0] * ring[(i + 1) % 4][1] - ring[(i + 1) % 4][0] * ring[i][1]).sum();
        if twice_area < 0.0 {
            ring.reverse();
        }
        ring.push(ring[0]);
        Some(ring)
    }
}

/// An image chip around a detection, PNG-encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chip {
    pub frame_id: u64,
    pub detection_index: u32,
    /// Chip origin and size in frame pixels.
    pub origin: [u32; 2],
    pub size: [u32; 2],
    // as bytes, not a sequence of u8 (the same on the wire with postcard, copied in one go)
    #[serde(with = "serde_bytes")]
    pub png: Vec<u8>,
}

impl Chip {
    /// The `detection_index` of a full-resolution tile an operator asked for (`RequestTile`): it
    /// belongs to no detection, and a frame may have several.
    pub const REQUESTED_TILE: u32 = u32::MAX;

    /// The detection whose chip this is; `None` for a requested tile.
    pub fn detection(&self) -> Option<u32> {
        (self.detection_index != Self::REQUESTED_TILE).then_some(self.detection_index)
    }
}

/// A reduced view of a whole frame, PNG-encoded, with its footprint corners (lat, lon).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thumbnail {
    pub frame_id: u64,
    pub frame_time_ms: i64,
    pub footprint: [[f64; 2]; 4],
    // as bytes, not a sequence of u8 (the same on the wire with postcard, copied in one go)
    #[serde(with = "serde_bytes")]
    pub png: Vec<u8>,
}

/// Housekeeping telemetry: named values at one time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Housekeeping {
    pub time_ms: i64,
    pub values: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// Something that happened on board: a mode change, a fault, a dropped frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub time_ms: i64,
    pub severity: Severity,
    pub source: String,
    pub message: String,
}

/// How far a command got on board (PUS service 1's acceptance and completion reports): flight
/// sends one for every command it receives, refused ones included.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandReport {
    /// The ground's audit id of the command (of its sequence, for a time-tagged one).
    pub command_id: u64,
    /// Spacecraft time of the stage, Unix ms.
    pub time_ms: i64,
    /// For one command of a time-tagged sequence: the time it was tagged with.
    pub tagged_at: Option<i64>,
    pub stage: CommandStage,
}

impl CommandReport {
    /// The order a command's reports read in (several share a time and may come down in any
    /// order): by time, the command's own before those of its time-tagged commands, these by their
    /// tags, and acceptance before what ended it.
    pub fn order(&self) -> (i64, Option<i64>, u8) {
        let stage = match self.stage {
            CommandStage::Accepted => 0,
            CommandStage::Refused { .. } | CommandStage::Completed { .. } | CommandStage::Failed { .. } => 1,
        };
        (self.time_ms, self.tagged_at, stage)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandStage {
    /// Received, and flight will run it (or has stored it, for a time-tagged sequence).
    Accepted,
    /// Received and refused: it did not run.
    Refused { reason: String },
    /// It ran.
    Completed { detail: String },
    /// It was run and could not be carried out.
    Failed { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Body {
    Detections(Detections),
    Chip(Chip),
    Thumbnail(Thumbnail),
    Housekeeping(Housekeeping),
    Event(Event),
    CommandReport(CommandReport),
}

impl Body {
    pub fn kind(&self) -> Kind {
        match self {
            Self::Detections(_) => Kind::Detections,
            Self::Chip(_) => Kind::Chip,
            Self::Thumbnail(_) => Kind::Thumbnail,
            Self::Housekeeping(_) => Kind::Housekeeping,
            Self::Event(_) => Kind::Event,
            Self::CommandReport(_) => Kind::CommandReport,
        }
    }
}

/// A product with its stable id (the same id whenever and however often it is sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
    pub created_ms: i64,
    pub body: Body,
}

/// A product ready to send: its envelope and compressed content. The CRC was made from the
/// content when the product was encoded, and travels with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedProduct {
    pub id: u64,
    pub kind: Kind,
    pub content_crc: u32,
    pub bytes: Vec<u8>,
}

/// Why bytes are not a product.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    #[error("product envelope needs {ENVELOPE_LEN} bytes, found {0}")]
    Short(usize),
    #[error("not a Kestrel product (bytes 0-1 are {0:02x?}, expected \"KP\")")]
    Magic([u8; 2]),
    #[error("product schema version {found} is not 1 to {SCHEMA_VERSION}, the ones this build reads")]
    Version { found: u16 },
    #[error("unknown product kind {0} at byte 4")]
    Kind(u8),
    #[error("product {id}: content does not decompress: {message}")]
    Decompress { id: u64, message: String },
    #[error("product {id}: content CRC-32 is {found:#010x}, the envelope says {expected:#010x}")]
    Crc { id: u64, expected: u32, found: u32 },
    #[error("product {id}: content is not a schema-{SCHEMA_VERSION} product: {message}")]
    Schema { id: u64, message: String },
    #[error("product {id}: the envelope says {envelope}, the content says {content}")]
    Mismatch { id: u64, envelope: String, content: String },
}

impl Product {
    pub fn encode(&self) -> EncodedProduct {
        // postcard writes every schema value (no maps with non-string keys, no floats as keys)
        let content = postcard::to_stdvec(self).unwrap_or_default();
        let content_crc = crc32(&content);
        let kind = self.body.kind();
        let mut bytes = Vec::with_capacity(ENVELOPE_LEN + content.len() / 2);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&SCHEMA_VERSION.to_be_bytes());
        bytes.push(kind as u8);
        bytes.extend_from_slice(&self.id.to_be_bytes());
        bytes.extend_from_slice(&content_crc.to_be_bytes());
        bytes.extend(zstd::bulk::compress(&content, ZSTD_LEVEL).unwrap_or_default());
        EncodedProduct { id: self.id, kind, content_crc, bytes }
    }

    /// Decodes and verifies an envelope: version, kind, decompression within bounds, content CRC,
    /// schema, and that envelope and content agree.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProductError> {
        let (header, mut content) = Envelope::verified_content(bytes)?;
        let id = header.id;
        if header.version == 1 && header.kind == Kind::Detections {
            // schema 2 appended the oriented boxes' list to detections: here it is, empty
            content.push(0);
        }
        let product: Product =
            postcard::from_bytes(&content).map_err(|e| ProductError::Schema { id, message: e.to_string() })?;
        if let Body::Detections(set) = &product.body
            && !set.oriented.is_empty()
            && set.oriented.len() != set.detections.len()
        {
            let message = format!("{} oriented boxes for {} detections", set.oriented.len(), set.detections.len());
            return Err(ProductError::Schema { id, message });
        }
        if product.id != id || product.body.kind() != header.kind {
            return Err(ProductError::Mismatch {
                id,
                envelope: format!("id {id}, {:?}", header.kind),
                content: format!("id {}, {:?}", product.id, product.body.kind()),
            });
        }
        Ok(product)
    }
}

thread_local! {
    /// One zstd context per thread, made once: a context per product cost the ground's station
    /// thread as much as the decompression itself.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        RefCell::new(zstd::bulk::Decompressor::new().ok());
}

/// zstd content, at most [`MAX_CONTENT_LEN`] bytes of it. A frame that declares its size (ours
/// do) is decompressed into a buffer of exactly that size, and must fill it; one that does not is
/// streamed, so that memory follows the real size of the content rather than the bound.
fn decompress(compressed: &[u8]) -> Result<Vec<u8>, String> {
    match zstd::zstd_safe::get_frame_content_size(compressed) {
        Ok(Some(size)) if size > MAX_CONTENT_LEN as u64 => {
            Err(format!("content of {size} bytes exceeds {MAX_CONTENT_LEN} bytes"))
        }
        Ok(Some(size)) => DECOMPRESSOR.with_borrow_mut(|context| match context {
            Some(context) => context.decompress(compressed, size as usize).map_err(|e| e.to_string()),
            None => streamed(compressed),
        }),
        _ => streamed(compressed),
    }
}

fn streamed(compressed: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let decoder = zstd::stream::read::Decoder::with_buffer(compressed).map_err(|e| e.to_string())?;
    let mut content = Vec::with_capacity(compressed.len() * 2);
    decoder.take(MAX_CONTENT_LEN as u64 + 1).read_to_end(&mut content).map_err(|e| e.to_string())?;
    if content.len() > MAX_CONTENT_LEN {
        return Err(format!("content exceeds {MAX_CONTENT_LEN} bytes"));
    }
    Ok(content)
}

/// The fixed part of a product envelope, readable without decompressing (for de-duplication).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope {
    /// The schema version it was written in: 1 or 2 (this build writes 2).
    pub version: u16,
    pub kind: Kind,
    pub id: u64,
    pub content_crc: u32,
}

impl Envelope {
    /// The header, and the content under it decompressed (within bounds) and held to the header's
    /// CRC: all that [`Product::decode`] checks before the schema.
    fn verified_content(bytes: &[u8]) -> Result<(Self, Vec<u8>), ProductError> {
        let header = Self::parse(bytes)?;
        let id = header.id;
        let content = decompress(&bytes[ENVELOPE_LEN..]).map_err(|message| ProductError::Decompress { id, message })?;
        let found = crc32(&content);
        if found != header.content_crc {
            return Err(ProductError::Crc { id, expected: header.content_crc, found });
        }
        Ok((header, content))
    }

    /// The header, once the content it carries is checked against it (decompressed and its CRC
    /// compared), without decoding the schema: for the one who just encoded it and wants to know
    /// the bytes are what was encoded.
    pub fn verify(bytes: &[u8]) -> Result<Self, ProductError> {
        Self::verified_content(bytes).map(|(header, _)| header)
    }

    pub fn parse(bytes: &[u8]) -> Result<Self, ProductError> {
        if bytes.len() < ENVELOPE_LEN {
            return Err(ProductError::Short(bytes.len()));
        }
        if &bytes[..2] != MAGIC {
            return Err(ProductError::Magic([bytes[0], bytes[1]]));
        }
        let version = u16::from_be_bytes([bytes[2], bytes[3]]);
        if !(1..=SCHEMA_VERSION).contains(&version) {
            return Err(ProductError::Version { found: version });
        }
        let kind = Kind::from_byte(bytes[4]).ok_or(ProductError::Kind(bytes[4]))?;
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[5..13]);
        let mut crc = [0u8; 4];
        crc.copy_from_slice(&bytes[13..17]);
        Ok(Self { version, kind, id: u64::from_be_bytes(id), content_crc: u32::from_be_bytes(crc) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_bytes_are_encoded_as_a_length_and_the_bytes_as_a_sequence_of_u8_always_was() {
        let png = vec![7u8, 0, 255, 128];
        let chip = Chip { frame_id: 1, detection_index: 2, origin: [3, 4], size: [5, 6], png: png.clone() };
        let as_bytes = postcard::to_allocvec(&chip).expect("encode");
        #[derive(Serialize)]
        struct ChipAsSequence {
            frame_id: u64,
            detection_index: u32,
            origin: [u32; 2],
            size: [u32; 2],
            png: Vec<u8>,
        }
        let as_sequence = ChipAsSequence { frame_id: 1, detection_index: 2, origin: [3, 4], size: [5, 6], png };
        assert_eq!(as_bytes, postcard::to_allocvec(&as_sequence).expect("encode"));
        assert!(as_bytes.ends_with(&[4, 7, 0, 255, 128]));
    }

    fn detections() -> Product {
        Product {
            id: 0x0102_0304_0506_0708,
            created_ms: 1_774_000_000_000,
            body: Body::Detections(Detections {
                frame_id: 7,
                frame_time_ms: 1_774_000_000_000,
                model: "vessels-s2".into(),
                detections: vec![Detection {
                    class_id: 0,
                    class_name: "vessel".into(),
                    score: 0.91,
                    pixel_box: [10.0, 12.5, 30.0, 40.0],
                    latitude: 33.6,
                    longitude: -7.6,
                }],
                oriented: vec![],
            }),
        }
    }

    #[test]
    fn a_schema_1_product_reads_as_schema_2_without_oriented_boxes() {
        // schema 1 as it was written: the same fields, without the oriented boxes' list
        #[derive(Serialize)]
        struct DetectionsV1 {
            frame_id: u64,
            frame_time_ms: i64,
            model: String,
            detections: Vec<Detection>,
        }
        #[derive(Serialize)]
        enum BodyV1 {
            Detections(DetectionsV1),
        }
        #[derive(Serialize)]
        struct ProductV1 {
            id: u64,
            created_ms: i64,
            body: BodyV1,
        }
        let expected = detections();
        let Body::Detections(set) = &expected.body else { unreachable!() };
        let old = ProductV1 {
            id: expected.id,
            created_ms: expected.created_ms,
            body: BodyV1::Detections(DetectionsV1 {
                frame_id: set.frame_id,
                frame_time_ms: set.frame_time_ms,
                model: set.model.clone(),
                detections: set.detections.clone(),
            }),
        };
        let content = postcard::to_stdvec(&old).expect("encode");
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&1u16.to_be_bytes());
        bytes.push(Kind::Detections as u8);
        bytes.extend_from_slice(&expected.id.to_be_bytes());
        bytes.extend_from_slice(&crc32(&content).to_be_bytes());
        bytes.extend(zstd::bulk::compress(&content, ZSTD_LEVEL).expect("compress"));
        assert_eq!(Envelope::parse(&bytes).map(|e| e.version), Ok(1));
        assert_eq!(Product::decode(&bytes), Ok(expected));
    }

    #[test]
    fn oriented_boxes_travel_one_per_detection() {
        let mut product = detections();
        let Body::Detections(set) = &mut product.body else { unreachable!() };
        set.oriented = vec![OrientedBox { pixel: [20.0, 26.0, 30.0, 8.0, 0.5], corners: [[33.6, -7.6]; 4] }];
        assert_eq!(Product::decode(&product.encode().bytes), Ok(product.clone()));
        let Body::Detections(set) = &mut product.body else { unreachable!() };
        set.oriented.push(set.oriented[0]);
        let refused = Product::decode(&product.encode().bytes);
        assert!(
            matches!(&refused, Err(ProductError::Schema { message, .. }) if message.contains("2 oriented boxes for 1"))
        );
    }

    #[test]
    fn every_kind_round_trips() {
        let products = [
            detections(),
            Product {
                id: 2,
                created_ms: 5,
                body: Body::Chip(Chip {
                    frame_id: 7,
                    detection_index: 0,
                    origin: [1, 2],
                    size: [64, 64],
                    png: vec![0x89; 300],
                }),
            },
            Product {
                id: 3,
                created_ms: 5,
                body: Body::Thumbnail(Thumbnail {
                    frame_id: 7,
                    frame_time_ms: 1,
                    footprint: [[1.0, 2.0]; 4],
                    png: vec![1; 10],
                }),
            },
            Product {
                id: 4,
                created_ms: 5,
                body: Body::Housekeeping(Housekeeping { time_ms: 9, values: vec![("soc".into(), 0.8)] }),
            },
            Product {
                id: 5,
                created_ms: 5,
                body: Body::Event(Event {
                    time_ms: 9,
                    severity: Severity::Warning,
                    source: "scheduler".into(),
                    message: "THROTTLED".into(),
                }),
            },
            Product {
                id: 6,
                created_ms: 5,
                body: Body::CommandReport(CommandReport {
                    command_id: u64::MAX - 1,
                    time_ms: 9,
                    tagged_at: Some(8),
                    stage: CommandStage::Failed { reason: "no detector loaded".into() },
                }),
            },
        ];
        for product in products {
            let encoded = product.encode();
            assert_eq!(encoded.kind, product.body.kind());
            assert_eq!(Kind::from_byte(encoded.kind as u8), Some(encoded.kind));
            assert_eq!(Product::decode(&encoded.bytes), Ok(product));
        }
    }

    #[test]
    fn a_commands_reports_read_in_time_order_acceptance_first() {
        let report = |time_ms, tagged_at, stage| CommandReport { command_id: 1, time_ms, tagged_at, stage };
        let done = || CommandStage::Completed { detail: String::new() };
        let mut reports = [
            report(5, Some(2), done()),
            report(5, None, done()),
            report(5, None, CommandStage::Accepted),
            report(4, None, CommandStage::Refused { reason: String::new() }),
        ];
        reports.sort_by_key(CommandReport::order);
        let order: Vec<_> =
            reports.iter().map(|r| (r.time_ms, r.tagged_at, r.stage == CommandStage::Accepted)).collect();
        assert_eq!(order, [(4, None, false), (5, None, true), (5, None, false), (5, Some(2), false)]);
    }

    #[test]
    fn corruption_is_refused_with_what_is_wrong() {
        let encoded = detections().encode();
        assert!(matches!(Product::decode(&encoded.bytes[..10]), Err(ProductError::Short(10))));
        let mut bad = encoded.bytes.clone();
        bad[0] = b'X';
        assert!(matches!(Product::decode(&bad), Err(ProductError::Magic(_))));
        let mut bad = encoded.bytes.clone();
        bad[3] = 9;
        assert_eq!(Product::decode(&bad), Err(ProductError::Version { found: 9 }));
        let mut bad = encoded.bytes.clone();
        bad[4] = 77;
        assert_eq!(Product::decode(&bad), Err(ProductError::Kind(77)));
        let mut bad = encoded.bytes.clone();
        bad[14] ^= 1;
        assert!(matches!(Product::decode(&bad), Err(ProductError::Crc { .. })));
        let mut bad = encoded.bytes.clone();
        let last = bad.len() - 3;
        bad[last] ^= 0x40;
        assert!(Product::decode(&bad).is_err(), "a flipped content byte is caught");
        let mut bad = encoded.bytes.clone();
        bad[4] = Kind::Event as u8;
        assert!(matches!(Product::decode(&bad), Err(ProductError::Mismatch { .. })));
    }

    #[test]
    fn a_decompression_bomb_is_bounded_whether_or_not_it_declares_its_size() {
        let envelope = detections().encode().bytes[..ENVELOPE_LEN].to_vec();
        let bomb = vec![0u8; MAX_CONTENT_LEN + 1];
        let declared = zstd::bulk::compress(&bomb, 19).expect("compress");
        assert_eq!(zstd::zstd_safe::get_frame_content_size(&declared).ok(), Some(Some(bomb.len() as u64)));
        let undeclared = zstd::stream::encode_all(&bomb[..], 19).expect("compress");
        assert_eq!(zstd::zstd_safe::get_frame_content_size(&undeclared).ok(), Some(None));
        for compressed in [declared, undeclared] {
            let bytes = [envelope.as_slice(), &compressed].concat();
            match Product::decode(&bytes) {
                Err(ProductError::Decompress { message, .. }) => {
                    assert!(message.contains(&format!("exceeds {MAX_CONTENT_LEN} bytes")), "{message}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    /// `frame` with the content size its header declares one less (RFC 8878, 3.1.1.1).
    fn declaring_one_byte_less(mut frame: Vec<u8>) -> Vec<u8> {
        let descriptor = frame[4];
        let single_segment = descriptor & 0x20 != 0;
        assert_eq!(descriptor & 0x03, 0, "no dictionary id");
        let field = 5 + usize::from(!single_segment);
        let width = match descriptor >> 6 {
            0 => usize::from(single_segment),
            1 => 2,
            2 => 4,
            _ => 8,
        };
        let mut value = [0u8; 8];
        value[..width].copy_from_slice(&frame[field..field + width]);
        let declared = u64::from_le_bytes(value) - 1;
        frame[field..field + width].copy_from_slice(&declared.to_le_bytes()[..width]);
        frame
    }

    #[test]
    fn content_longer_than_its_frame_declares_is_refused() {
        let envelope = &detections().encode().bytes[..ENVELOPE_LEN];
        let content = postcard::to_stdvec(&detections()).expect("content");
        let frame = zstd::bulk::compress(&content, 3).expect("compress");
        let size = zstd::zstd_safe::get_frame_content_size(&frame).ok().flatten();
        assert_eq!(size, Some(content.len() as u64));
        let lying = declaring_one_byte_less(frame.clone());
        assert_eq!(zstd::zstd_safe::get_frame_content_size(&lying).ok().flatten(), Some(content.len() as u64 - 1));
        assert!(matches!(Product::decode(&[envelope, &lying].concat()), Err(ProductError::Decompress { .. })));
        assert_eq!(Product::decode(&[envelope, &frame].concat()).expect("decodes"), detections());
    }
}
