//! One suite, both archives: the embedded `sled` one and PostgreSQL (a real server: scripts/test.sh
//! starts one and sets KESTREL_TEST_POSTGRES; each test works in a schema of its own).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use kestrel_ground::archive::{Archive, DetectionQuery, PostgresArchive, SledArchive, Stored};
use kestrel_link::product::{Body, Detection, Detections, Event, Product, Severity};

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
