//! One suite, both archives: the embedded `sled` one and PostgreSQL (a real server: scripts/test.sh
//! starts one and sets KESTREL_TEST_POSTGRES; each test works in a schema of its own).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use kestrel_ground::archive::{Archive, DetectionQuery, PostgresArchive, SledArchive, Stored, TimelineQuery};
use kestrel_link::product::{Body, Chip, Detection, Detections, Event, Kind, OrientedBox, Product, Severity};

fn postgres_url() -> String {
    std::env::var("KESTREL_TEST_POSTGRES")
        .expect("KESTREL_TEST_POSTGRES is not set: run the tests with scripts/test.sh, or export the URL scripts/setup-postgres.sh prints")
}

/// A fresh PostgreSQL schema for one test.
fn postgres() -> Arc<dyn Archive> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let schema = format!("test_{}_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed), nanos);
    Arc::new(PostgresArchive::connect(&postgres_url(), Some(&schema)).expect("PostgreSQL archive"))
}

fn both(test: impl Fn(Arc<dyn Archive>, Arc<dyn Archive>)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let sled: Arc<dyn Archive> = Arc::new(SledArchive::open(dir.path()).expect("sled archive"));
    // the second handle on the same archive: another ground process for PostgreSQL
    test(sled.clone(), sled);
    let url_schema = postgres();
    test(url_schema.clone(), url_schema);
}

fn detections(id: u64, time: i64, n: usize) -> Product {
    Product {
        id,
        created_ms: time,
        body: Body::Detections(Detections {
            frame_id: id,
            frame_time_ms: time,
            model: "m".into(),
            detections: (0..n)
                .map(|i| Detection {
                    class_id: 0,
                    class_name: "vessel".into(),
                    score: 0.5 + i as f32 / 100.0,
                    pixel_box: [1.0, 2.0, 3.0, 4.0],
                    latitude: 33.6,
                    longitude: -7.6,
                })
                .collect(),
            oriented: vec![],
        }),
    }
}

#[test]
fn a_product_is_stored_once_and_a_conflict_never_overwrites_but_is_kept_aside() {
    both(|archive, _| {
        let product = detections(7, 1_000, 3);
        let bytes = product.encode().bytes;
        assert_eq!(archive.store(&product, &bytes, "a", 1).expect("store"), Stored::Inserted);
        assert_eq!(archive.store(&product, &bytes, "b", 2).expect("store"), Stored::Duplicate);
        let other = detections(7, 2_000, 1);
        assert_eq!(archive.store(&other, &other.encode().bytes, "b", 3).expect("store"), Stored::Conflict);
        assert_eq!(archive.store(&other, &other.encode().bytes, "a", 4).expect("store"), Stored::Conflict);
        assert_eq!((archive.product_count().expect("count"), archive.detection_count().expect("count")), (1, 3));
        // the newcomer is kept aside, once, for an operator to tell which of the two is corrupt
        assert_eq!(archive.conflicts().expect("conflicts"), vec![(7, other.encode().bytes)]);
        assert_eq!(archive.product_bytes(7).expect("get"), Some(bytes));
        assert_eq!(archive.product_bytes(8).expect("get"), None);
        let records = archive.records(None, 10).expect("records");
        assert_eq!((records[0].station.as_str(), records[0].content_crc), ("a", product.encode().content_crc));
    });
}

#[test]
fn records_page_in_id_order_and_detections_come_back_in_time_order() {
    both(|archive, _| {
        for (id, time) in [(3, 5_000), (1, -3_000), (2, 9_000)] {
            let p = detections(id, time, 2);
            archive.store(&p, &p.encode().bytes, "a", 0).expect("store");
        }
        let event = Product {
            id: 4,
            created_ms: 0,
            body: Body::Event(Event { time_ms: 0, severity: Severity::Info, source: "s".into(), message: "m".into() }),
        };
        archive.store(&event, &event.encode().bytes, "a", 0).expect("store");
        let ids: Vec<u64> = archive.records(None, 2).expect("page").iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![1, 2]);
        let ids: Vec<u64> = archive.records(Some(2), 10).expect("page").iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![3, 4]);
        let window = |from_ms, to_ms, limit| DetectionQuery { from_ms, to_ms, limit, ..DetectionQuery::default() };
        let times: Vec<i64> =
            archive.detections(&window(-10_000, 9_000, 100)).expect("query").iter().map(|d| d.frame_time_ms).collect();
        assert_eq!(times, vec![-3_000, -3_000, 5_000, 5_000]);
        assert_eq!(archive.detections(&window(-10_000, 9_001, 3)).expect("query").len(), 3);
        let vessels = DetectionQuery {
            class: Some("vessel".into()),
            bbox: Some([-8.0, 33.0, -7.0, 34.0]),
            ..DetectionQuery::default()
        };
        assert_eq!(archive.detections(&vessels).expect("query").len(), 6);
        let elsewhere = DetectionQuery { bbox: Some([10.0, 33.0, 11.0, 34.0]), ..DetectionQuery::default() };
        assert!(archive.detections(&elsewhere).expect("query").is_empty());
        let planes = DetectionQuery { class: Some("plane".into()), ..DetectionQuery::default() };
        assert!(archive.detections(&planes).expect("query").is_empty());
    });
}

#[test]
fn a_box_across_the_antimeridian_finds_what_lies_on_either_side_of_it() {
    both(|archive, _| {
        for (id, longitude) in [(1, 179.5), (2, -179.5), (3, 0.0)] {
            let mut p = detections(id, id as i64, 1);
            if let Body::Detections(d) = &mut p.body {
                d.detections[0].longitude = longitude;
            }
            archive.store(&p, &p.encode().bytes, "a", 0).expect("store");
        }
        let across = DetectionQuery { bbox: Some([179.0, 33.0, -179.0, 34.0]), ..DetectionQuery::default() };
        let found: Vec<u64> = archive.detections(&across).expect("query").iter().map(|d| d.product_id).collect();
        assert_eq!(found, vec![1, 2]);
        let counted: u64 = archive.detection_cells(&across, 10.0).expect("cells").iter().map(|c| c.count).sum();
        assert_eq!(counted, 2);
    });
}

#[test]
fn uplink_sequence_numbers_are_never_handed_out_twice() {
    both(|first, second| {
        let a = first.reserve_uplink_arsns(100).expect("reserve");
        let b = second.reserve_uplink_arsns(100).expect("reserve");
        let c = first.reserve_uplink_arsns(1).expect("reserve");
        assert!(a >= 1);
        assert_eq!((b, c), (a + 100, a + 200));
    });
}

#[test]
fn downlink_replay_marks_only_rise_and_are_kept_per_security_association() {
    both(|first, second| {
        assert!(first.downlink_replay_marks(1).expect("marks").is_empty());
        first.raise_downlink_replay_marks(1, &[(0, 50), (2, 7)]).expect("raise");
        second.raise_downlink_replay_marks(1, &[(0, 40), (2, 9), (5, 1)]).expect("raise");
        second.raise_downlink_replay_marks(3, &[(0, 1000)]).expect("another SPI");
        let mut marks = second.downlink_replay_marks(1).expect("marks");
        marks.sort_unstable();
        assert_eq!(marks, vec![(0, 50), (2, 9), (5, 1)], "a lower mark never lowers one");
        assert_eq!(first.downlink_replay_marks(3).expect("marks"), vec![(0, 1000)]);
    });
}

#[test]
fn two_writers_racing_on_the_same_products_store_each_once() {
    let url = postgres_url();
    let schema = format!("race_{}", std::process::id());
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (url, schema) = (url.clone(), schema.clone());
            std::thread::spawn(move || {
                let archive = PostgresArchive::connect(&url, Some(&schema)).expect("archive");
                (0..200u64)
                    .map(|id| {
                        let p = detections(10_000 + id, id as i64, 1);
                        archive.store(&p, &p.encode().bytes, &format!("station-{w}"), 0).expect("store")
                    })
                    .filter(|s| *s == Stored::Inserted)
                    .count()
            })
        })
        .collect();
    let inserted: usize = writers.into_iter().map(|w| w.join().expect("writer")).sum();
    let archive = PostgresArchive::connect(&url, Some(&schema)).expect("archive");
    assert_eq!(inserted, 200, "each product inserted by exactly one writer");
    assert_eq!(archive.product_count().expect("count"), 200);
}

#[test]
fn the_audit_trail_keeps_every_entry_newest_first() {
    both(|archive, _| {
        let entry = |operator: &str, outcome: &str| kestrel_ground::archive::AuditEntry {
            id: 0,
            unix_ms: 5,
            operator: operator.into(),
            command: r#"{"SetMode":{"mode":"Safe"}}"#.into(),
            outcome: outcome.into(),
        };
        let first = archive.audit(&entry("alice", "submitted")).expect("audit");
        let second = archive.audit(&entry("bob", "sent")).expect("audit");
        assert!(second > first);
        let trail = archive.audit_trail(10).expect("trail");
        assert_eq!(
            trail.iter().map(|e| (e.id, e.operator.as_str())).collect::<Vec<_>>(),
            vec![(second, "bob"), (first, "alice")]
        );
        assert_eq!(archive.audit_trail(1).expect("trail").len(), 1);
    });
}

fn event(id: u64, time_ms: i64) -> Product {
    let body = Body::Event(Event { time_ms, severity: Severity::Info, source: "s".into(), message: format!("{id}") });
    Product { id, created_ms: time_ms, body }
}

fn chip(id: u64, frame_id: u64, detection_index: u32) -> Product {
    let body = Body::Chip(Chip { frame_id, detection_index, origin: [0, 0], size: [1, 1], png: vec![id as u8] });
    Product { id, created_ms: 0, body }
}

fn store(archive: &dyn Archive, products: &[Product]) {
    for p in products {
        archive.store(p, &p.encode().bytes, "a", 0).expect("store");
    }
}

#[test]
fn detections_page_by_offset_and_count_in_grid_cells() {
    both(|archive, _| {
        store(archive.as_ref(), &[detections(1, 1_000, 3), detections(2, 2_000, 2)]);
        let page = |offset| DetectionQuery { offset, limit: 2, ..DetectionQuery::default() };
        let keys =
            |q| archive.detections(&q).expect("query").iter().map(|d| (d.product_id, d.index)).collect::<Vec<_>>();
        assert_eq!(keys(page(0)), vec![(1, 0), (1, 1)]);
        assert_eq!(keys(page(2)), vec![(1, 2), (2, 0)]);
        assert_eq!(keys(page(4)), vec![(2, 1)]);
        // every detection sits at 33.6, -7.6: one cell of five, whatever the page
        let cells = archive.detection_cells(&page(4), 1.0).expect("cells");
        assert_eq!(cells.len(), 1);
        assert_eq!(cells[0].count, 5);
        assert!((cells[0].latitude - 33.6).abs() < 1e-9 && (cells[0].longitude + 7.6).abs() < 1e-9);
        let later = DetectionQuery { from_ms: 1_500, ..DetectionQuery::default() };
        assert_eq!(archive.detection_cells(&later, 1.0).expect("cells")[0].count, 2);
    });
}

#[test]
fn a_timeline_lists_one_kind_by_creation_time_either_way_and_a_chip_is_found_by_its_detection() {
    both(|archive, _| {
        store(archive.as_ref(), &[event(10, 300), event(11, 100), event(12, 200), detections(13, 150, 1)]);
        store(archive.as_ref(), &[chip(20, 13, 0), chip(21, 13, 1)]);
        let query = TimelineQuery { kind: Kind::Event, from_ms: 0, to_ms: 300, limit: 10, newest_first: false };
        let ids = |q: TimelineQuery| {
            archive
                .timeline(&q)
                .expect("timeline")
                .iter()
                .map(|b| Product::decode(b).expect("decode").id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(query), vec![11, 12]);
        assert_eq!(ids(TimelineQuery { to_ms: i64::MAX, newest_first: true, limit: 2, ..query }), vec![10, 12]);
        assert_eq!(ids(TimelineQuery { kind: Kind::Detections, ..query }), vec![13]);
        let found = archive.chip(13, 1).expect("chip").map(|b| Product::decode(&b).expect("decode").id);
        assert_eq!(found, Some(21));
        assert_eq!(archive.chip(13, 2).expect("chip"), None);
        // two tiles an operator asked for of one frame: both stored, neither taken for a chip
        store(archive.as_ref(), &[chip(30, 13, Chip::REQUESTED_TILE), chip(31, 13, Chip::REQUESTED_TILE)]);
        let tiles = TimelineQuery { kind: Kind::Chip, to_ms: i64::MAX, ..query };
        assert_eq!(ids(tiles), vec![20, 21, 30, 31]);
        assert_eq!(archive.chip(13, Chip::REQUESTED_TILE).expect("chip"), None);
    });
}

#[test]
fn a_sled_archive_from_before_the_indexes_is_reindexed_from_its_products_when_opened() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let archive = SledArchive::open(dir.path()).expect("archive");
        store(&archive, &[event(1, 5), detections(2, 7, 2), chip(3, 2, 1)]);
    }
    {
        // as an archive of the first layout: no schema mark, no timeline or chip trees
        let db = reopened(|| sled::open(dir.path()));
        db.open_tree("meta").expect("meta").remove("schema").expect("remove");
        for tree in ["timeline", "chips"] {
            db.drop_tree(tree).expect("drop");
        }
        db.flush().expect("flush");
    }
    let archive = reopened(|| SledArchive::open(dir.path()));
    assert_eq!(archive.detection_count().expect("count"), 2);
    let query = TimelineQuery { kind: Kind::Event, from_ms: 0, to_ms: 10, limit: 10, newest_first: false };
    assert_eq!(archive.timeline(&query).expect("timeline").len(), 1);
    assert!(archive.chip(2, 1).expect("chip").is_some());
}

/// Opens again what this process just closed: sled's flusher thread lets go of the database's
/// lock a moment after the last handle is dropped.
fn reopened<T, E: std::fmt::Debug>(open: impl Fn() -> Result<T, E>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match open() {
            Ok(opened) => return opened,
            Err(e) if std::time::Instant::now() > deadline => panic!("cannot open again: {e:?}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

#[test]
fn an_oriented_detections_box_is_kept_with_it_on_both_backends() {
    both(|archive, other| {
        let mut product = detections(77, 12_000, 2);
        let Body::Detections(set) = &mut product.body else { unreachable!() };
        let corners = [[33.61, -7.61], [33.61, -7.59], [33.59, -7.59], [33.59, -7.61]];
        set.oriented = vec![
            OrientedBox { pixel: [5.0, 6.0, 30.0, 8.0, 0.25], corners },
            OrientedBox { pixel: [50.0, 60.0, 12.0, 4.0, 3.0], corners: [[f64::NAN; 2]; 4] },
        ];
        archive.store(&product, &product.encode().bytes, "a", 0).expect("store");
        let query = DetectionQuery { from_ms: 11_000, to_ms: 13_000, ..DetectionQuery::default() };
        let found = other.detections(&query).expect("query");
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].oriented.map(|o| (o.pixel, o.corners)), Some(([5.0, 6.0, 30.0, 8.0, 0.25], corners)));
        let second = found[1].oriented.expect("oriented");
        assert_eq!(second.pixel, [50.0, 60.0, 12.0, 4.0, 3.0]);
        assert!(second.corners.iter().flatten().all(|v| v.is_nan()));
        // an axis-aligned model's detections have none
        let plain = detections(78, 12_500, 1);
        archive.store(&plain, &plain.encode().bytes, "a", 0).expect("store");
        let found = other.detections(&query).expect("query");
        assert_eq!(found.iter().filter(|d| d.oriented.is_none()).count(), 1);
    });
}
