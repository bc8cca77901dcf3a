//! The shared archive on PostgreSQL: several ground processes (stations) write one archive. A
//! product's row, and its detections, go in one transaction; `ON CONFLICT (id) DO NOTHING` makes
//! the first writer win when two processes store the same product at once.
//!
//! The synchronous `postgres` client runs a runtime of its own, which may not run inside the
//! service's tokio runtime, so the client lives on a thread of its own and calls reach it through
//! a channel.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};

use kestrel_link::product::{Body, Kind, OrientedBox, Product};
use postgres::types::ToSql;
use postgres::{Client, NoTls};

use super::{
    Archive, ArchiveError, AuditEntry, DetectionCell, DetectionQuery, DetectionRecord, ProductRecord, Stored,
    TimelineQuery, detection_records, record, reported_command,
};

/// Tables in the order their locks are taken when storing (products, then what refers to them),
/// so that a second process creating them while the first stores cannot deadlock.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS products (
    id BIGINT PRIMARY KEY,
    kind SMALLINT NOT NULL,
    created_ms BIGINT NOT NULL,
    content_crc BIGINT NOT NULL,
    size BIGINT NOT NULL,
    station TEXT NOT NULL,
    received_unix_ms BIGINT NOT NULL,
    envelope BYTEA NOT NULL
);
-- envelopes are zstd already and images incompressible: out of line, not compressed again
DO $$ BEGIN
    IF (SELECT attstorage FROM pg_attribute WHERE attrelid = 'products'::regclass AND attname = 'envelope') <> 'e' THEN
        ALTER TABLE products ALTER COLUMN envelope SET STORAGE EXTERNAL;
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS products_by_kind_time ON products (kind, created_ms, id);
CREATE TABLE IF NOT EXISTS chips (
    frame_id BIGINT NOT NULL,
    detection_index INTEGER NOT NULL,
    product_id BIGINT NOT NULL REFERENCES products (id),
    PRIMARY KEY (frame_id, detection_index)
);
-- a requested tile (detection index u32::MAX, -1 here) is no detection's chip: archives from before
-- indexed one of them
DELETE FROM chips WHERE detection_index = -1;
CREATE TABLE IF NOT EXISTS command_queue (id BIGINT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS command_reports (
    command_id BIGINT NOT NULL,
    product_id BIGINT NOT NULL REFERENCES products (id),
    PRIMARY KEY (command_id, product_id)
);
CREATE TABLE IF NOT EXISTS detections (
    product_id BIGINT NOT NULL REFERENCES products (id),
    idx INTEGER NOT NULL,
    frame_id BIGINT NOT NULL,
    frame_time_ms BIGINT NOT NULL,
    model TEXT NOT NULL,
    class_name TEXT NOT NULL,
    score REAL NOT NULL,
    x_min REAL NOT NULL, y_min REAL NOT NULL, x_max REAL NOT NULL, y_max REAL NOT NULL,
    latitude DOUBLE PRECISION NOT NULL,
    longitude DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (product_id, idx)
);
-- schema 2 of the products: an oriented detection's box, its 5 pixel values and 8 corner
-- coordinates as text (NaN kept); NULL otherwise
ALTER TABLE detections ADD COLUMN IF NOT EXISTS oriented TEXT;
CREATE INDEX IF NOT EXISTS detections_by_time ON detections (frame_time_ms, product_id, idx);
CREATE TABLE IF NOT EXISTS uplink (id INTEGER PRIMARY KEY, next_arsn BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS contacts (number BIGSERIAL PRIMARY KEY, unix_ms BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS downlink_replay (
    spi INTEGER NOT NULL,
    vcid SMALLINT NOT NULL,
    last_arsn BIGINT NOT NULL,
    PRIMARY KEY (spi, vcid)
);
CREATE TABLE IF NOT EXISTS conflicts (
    id BIGINT NOT NULL,
    envelope_crc BIGINT NOT NULL,
    envelope BYTEA NOT NULL,
    station TEXT NOT NULL,
    received_unix_ms BIGINT NOT NULL,
    PRIMARY KEY (id, envelope_crc)
);
CREATE TABLE IF NOT EXISTS audit (
    id BIGSERIAL PRIMARY KEY,
    unix_ms BIGINT NOT NULL,
    operator TEXT NOT NULL,
    command TEXT NOT NULL,
    outcome TEXT NOT NULL
);
";

/// The filters of a detection query, over parameters $1 to $7 (see `filter_params`).
const DETECTION_FILTER: &str = "frame_time_ms >= $1 AND frame_time_ms < $2 AND ($3::TEXT IS NULL OR class_name = $3)
     AND latitude BETWEEN $4 AND $5
     AND (CASE WHEN $6::DOUBLE PRECISION <= $7::DOUBLE PRECISION THEN longitude BETWEEN $6 AND $7 ELSE longitude >= $6 OR longitude <= $7 END)";

fn filter_params(query: &DetectionQuery) -> Vec<&(dyn ToSql + Sync)> {
    let [west, south, east, north] = query.bbox.as_ref().unwrap_or(&WHOLE_EARTH);
    vec![&query.from_ms, &query.to_ms, &query.class, south, north, west, east]
}

const WHOLE_EARTH: [f64; 4] = [-180.0, -90.0, 180.0, 90.0];

/// One product ready to store.
struct Row {
    record: ProductRecord,
    detections: Vec<DetectionRecord>,
    chip: Option<(i64, i32)>,
    /// The command it reports on (a command report).
    command: Option<i64>,
    envelope: Vec<u8>,
}

/// Stores rows (in id order) in one transaction: products with `ON CONFLICT DO NOTHING`, then
/// the chips and detections of those inserted, each as one statement over arrays.
fn store_rows(client: &mut Client, rows: &[Row]) -> Result<Vec<Stored>, ArchiveError> {
    let mut tx = client.transaction().map_err(storage)?;
    let column = |f: &dyn Fn(&Row) -> i64| rows.iter().map(f).collect::<Vec<i64>>();
    let ids = column(&|r| to_sql(r.record.id));
    let kinds: Vec<i16> = rows.iter().map(|r| r.record.kind as i16).collect();
    let envelopes: Vec<&[u8]> = rows.iter().map(|r| r.envelope.as_slice()).collect();
    let (station, received) = match rows.first() {
        Some(first) => (first.record.station.clone(), first.record.received_unix_ms),
        None => return Ok(Vec::new()),
    };
    let inserted: HashSet<i64> = tx
        .query(
            "INSERT INTO products (id, kind, created_ms, content_crc, size, station, received_unix_ms, envelope)
             SELECT id, kind, created_ms, content_crc, size, $6, $7, envelope
             FROM UNNEST($1::BIGINT[], $2::SMALLINT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[], $8::BYTEA[])
                  AS t (id, kind, created_ms, content_crc, size, envelope)
             ON CONFLICT (id) DO NOTHING RETURNING id",
            &[
                &ids,
                &kinds,
                &column(&|r| r.record.created_ms),
                &column(&|r| i64::from(r.record.content_crc)),
                &column(&|r| r.record.size as i64),
                &station,
                &received,
                &envelopes,
            ],
        )
        .map_err(storage)?
        .iter()
        .map(|row| row.get(0))
        .collect();

    // the first row of each inserted id is what was stored; every other row meets a stored twin
    let mut first_seen = HashSet::new();
    let is_new: Vec<bool> = ids.iter().map(|id| inserted.contains(id) && first_seen.insert(*id)).collect();
    let others: Vec<i64> = ids.iter().zip(&is_new).filter(|(_, new)| !**new).map(|(id, _)| *id).collect();
    let stored: std::collections::HashMap<i64, Vec<u8>> = if others.is_empty() {
        Default::default()
    } else {
        tx.query("SELECT id, envelope FROM products WHERE id = ANY($1)", &[&others])
            .map_err(storage)?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect()
    };
    let mut outcomes = Vec::with_capacity(rows.len());
    for ((row, id), new) in rows.iter().zip(&ids).zip(&is_new) {
        if *new {
            outcomes.push(Stored::Inserted);
        } else if stored.get(id) == Some(&row.envelope) {
            outcomes.push(Stored::Duplicate);
        } else {
            tx.execute(
                "INSERT INTO conflicts VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                &[
                    id,
                    &i64::from(super::envelope_crc(&row.envelope)),
                    &row.envelope,
                    &row.record.station,
                    &row.record.received_unix_ms,
                ],
            )
            .map_err(storage)?;
            outcomes.push(Stored::Conflict);
        }
    }

    let new_rows = || rows.iter().zip(&is_new).filter(|(_, new)| **new).map(|(row, _)| row);
    let chips: Vec<(i64, i32, i64)> =
        new_rows().filter_map(|r| r.chip.map(|(frame, index)| (frame, index, to_sql(r.record.id)))).collect();
    if !chips.is_empty() {
        tx.execute(
            "INSERT INTO chips SELECT * FROM UNNEST($1::BIGINT[], $2::INTEGER[], $3::BIGINT[]) ON CONFLICT DO NOTHING",
            &[
                &chips.iter().map(|c| c.0).collect::<Vec<_>>(),
                &chips.iter().map(|c| c.1).collect::<Vec<_>>(),
                &chips.iter().map(|c| c.2).collect::<Vec<_>>(),
            ],
        )
        .map_err(storage)?;
    }
    let reports: Vec<(i64, i64)> =
        new_rows().filter_map(|r| r.command.map(|command| (command, to_sql(r.record.id)))).collect();
    if !reports.is_empty() {
        tx.execute(
            "INSERT INTO command_reports SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[]) ON CONFLICT DO NOTHING",
            &[&reports.iter().map(|r| r.0).collect::<Vec<_>>(), &reports.iter().map(|r| r.1).collect::<Vec<_>>()],
        )
        .map_err(storage)?;
    }
    let detections: Vec<&DetectionRecord> = new_rows().flat_map(|r| &r.detections).collect();
    if !detections.is_empty() {
        let ints = |f: &dyn Fn(&DetectionRecord) -> i64| detections.iter().map(|d| f(d)).collect::<Vec<i64>>();
        let reals = |f: &dyn Fn(&DetectionRecord) -> f32| detections.iter().map(|d| f(d)).collect::<Vec<f32>>();
        let doubles = |f: &dyn Fn(&DetectionRecord) -> f64| detections.iter().map(|d| f(d)).collect::<Vec<f64>>();
        let texts =
            |f: &dyn Fn(&DetectionRecord) -> &str| detections.iter().map(|d| f(d).to_owned()).collect::<Vec<String>>();
        tx.execute(
            "INSERT INTO detections SELECT * FROM UNNEST($1::BIGINT[], $2::INTEGER[], $3::BIGINT[], $4::BIGINT[],
                 $5::TEXT[], $6::TEXT[], $7::REAL[], $8::REAL[], $9::REAL[], $10::REAL[], $11::REAL[],
                 $12::DOUBLE PRECISION[], $13::DOUBLE PRECISION[], $14::TEXT[])",
            &[
                &ints(&|d| to_sql(d.product_id)),
                &detections.iter().map(|d| d.index as i32).collect::<Vec<i32>>(),
                &ints(&|d| to_sql(d.frame_id)),
                &ints(&|d| d.frame_time_ms),
                &texts(&|d| &d.model),
                &texts(&|d| &d.class_name),
                &reals(&|d| d.score),
                &reals(&|d| d.pixel_box[0]),
                &reals(&|d| d.pixel_box[1]),
                &reals(&|d| d.pixel_box[2]),
                &reals(&|d| d.pixel_box[3]),
                &doubles(&|d| d.latitude),
                &doubles(&|d| d.longitude),
                &detections.iter().map(|d| d.oriented.as_ref().map(oriented_text)).collect::<Vec<Option<String>>>(),
            ],
        )
        .map_err(storage)?;
    }
    tx.commit().map_err(storage)?;
    Ok(outcomes)
}

type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// An oriented box as its column holds it: the pixel values, then the corners' coordinates, in
/// Rust's shortest round-trip notation (NaN where the frame was not georeferenced).
fn oriented_text(o: &OrientedBox) -> String {
    let pixel = o.pixel.iter().map(f32::to_string);
    pixel.chain(o.corners.iter().flatten().map(f64::to_string)).collect::<Vec<_>>().join(" ")
}

fn parse_oriented(text: &str) -> Result<OrientedBox, ArchiveError> {
    let corrupt = || ArchiveError::Corrupt { key: "detections.oriented".into(), message: format!("`{text}`") };
    let values: Vec<&str> = text.split(' ').collect();
    if values.len() != 13 {
        return Err(corrupt());
    }
    let mut out = OrientedBox { pixel: [0.0; 5], corners: [[0.0; 2]; 4] };
    for (slot, v) in out.pixel.iter_mut().zip(&values[..5]) {
        *slot = v.parse().map_err(|_| corrupt())?;
    }
    for (slot, v) in out.corners.iter_mut().flatten().zip(&values[5..]) {
        *slot = v.parse().map_err(|_| corrupt())?;
    }
    Ok(out)
}

/// Ids are u64 on the link and BIGINT in PostgreSQL: stored bit for bit.
fn to_sql(id: u64) -> i64 {
    id as i64
}

fn from_sql(id: i64) -> u64 {
    id as u64
}

/// An audit row of `SELECT id, unix_ms, operator, command, outcome`.
fn audit_entry(row: &postgres::Row) -> AuditEntry {
    AuditEntry {
        id: from_sql(row.get(0)),
        unix_ms: row.get(1),
        operator: row.get(2),
        command: row.get(3),
        outcome: row.get(4),
    }
}

fn kind_of(code: i16) -> Option<Kind> {
    u8::try_from(code).ok().and_then(Kind::from_byte)
}

#[derive(Debug)]
pub struct PostgresArchive {
    jobs: Mutex<Sender<Job>>,
    location: String,
}

/// The server's own words (`postgres::Error` alone says only "db error").
fn describe(e: &postgres::Error) -> String {
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        (None, Some(source)) => format!("{e}: {source}"),
        (None, None) => e.to_string(),
    }
}

fn storage(e: postgres::Error) -> ArchiveError {
    ArchiveError::Storage(describe(&e))
}

impl PostgresArchive {
    /// Connects, creates the tables if needed (in `schema` when given, made if missing).
    pub fn connect(url: &str, schema: Option<&str>) -> Result<Self, ArchiveError> {
        // the URL may hold a password: errors name only host and database
        let location = url.rsplit('@').next().unwrap_or("postgres").to_owned();
        let open_error = |message: String| ArchiveError::Open { location: location.clone(), message };
        let (jobs, receiver) = channel::<Job>();
        let (ready_tx, ready_rx) = channel::<Result<(), String>>();
        let url = url.to_owned();
        let schema = schema.map(str::to_owned);
        std::thread::Builder::new()
            .name("archive-postgres".into())
            .spawn(move || {
                let setup = || -> Result<Client, postgres::Error> {
                    let mut client = Client::connect(&url, NoTls)?;
                    // CREATE ... IF NOT EXISTS is not safe against a second process doing the same
                    // at the same instant: take turns
                    client.batch_execute("SELECT pg_advisory_lock(7251)")?;
                    if let Some(schema) = &schema {
                        client.batch_execute(&format!(
                            "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET search_path TO \"{schema}\";"
                        ))?;
                    }
                    let created = client.batch_execute(SCHEMA);
                    client.batch_execute("SELECT pg_advisory_unlock(7251)")?;
                    created.map(|()| client)
                };
                match setup() {
                    Ok(mut client) => {
                        let _ = ready_tx.send(Ok(()));
                        for job in receiver {
                            job(&mut client);
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(describe(&e)));
                    }
                }
            })
            .map_err(|e| open_error(e.to_string()))?;
        ready_rx.recv().map_err(|e| open_error(e.to_string()))?.map_err(open_error)?;
        Ok(Self { jobs: Mutex::new(jobs), location })
    }

    /// Runs `work` on the client's thread and waits for its answer.
    fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Client) -> Result<T, ArchiveError> + Send + 'static,
    ) -> Result<T, ArchiveError> {
        let (reply, answer) = channel();
        let job: Job = Box::new(move |client| {
            let _ = reply.send(work(client));
        });
        let gone = || ArchiveError::Storage(format!("the connection to `{}` is gone", self.location));
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).send(job).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

impl Archive for PostgresArchive {
    fn store_all(
        &self,
        arrivals: &[(&Product, &[u8])],
        station: &str,
        received_unix_ms: i64,
    ) -> Result<Vec<Stored>, ArchiveError> {
        // in id order: two processes storing overlapping batches take their row locks in the
        // same order, so neither waits on the other in a cycle
        let mut order: Vec<usize> = (0..arrivals.len()).collect();
        order.sort_by_key(|&i| arrivals[i].0.id);
        let rows = order
            .iter()
            .map(|&i| {
                let (product, bytes) = arrivals[i];
                let chip = match &product.body {
                    Body::Chip(chip) => chip.detection().map(|index| (to_sql(chip.frame_id), index as i32)),
                    _ => None,
                };
                Ok(Row {
                    record: record(product, bytes, station, received_unix_ms)?,
                    detections: detection_records(product),
                    chip,
                    command: reported_command(product).map(to_sql),
                    envelope: bytes.to_vec(),
                })
            })
            .collect::<Result<Vec<_>, ArchiveError>>()?;
        // one transaction and a few statements for the batch, whatever its size: one commit (one
        // WAL flush) makes it all durable
        let sorted = self.call(move |client| store_rows(client, &rows))?;
        let mut outcomes = vec![Stored::Duplicate; arrivals.len()];
        for (&i, outcome) in order.iter().zip(sorted) {
            outcomes[i] = outcome;
        }
        Ok(outcomes)
    }

    fn product_count(&self) -> Result<u64, ArchiveError> {
        self.call(|client| {
            Ok(client.query_one("SELECT count(*) FROM products", &[]).map_err(storage)?.get::<_, i64>(0) as u64)
        })
    }

    fn detection_count(&self) -> Result<u64, ArchiveError> {
        self.call(|client| {
            Ok(client.query_one("SELECT count(*) FROM detections", &[]).map_err(storage)?.get::<_, i64>(0) as u64)
        })
    }

    fn product_bytes(&self, id: u64) -> Result<Option<Vec<u8>>, ArchiveError> {
        self.call(move |client| {
            Ok(client
                .query_opt("SELECT envelope FROM products WHERE id = $1", &[&to_sql(id)])
                .map_err(storage)?
                .map(|row| row.get(0)))
        })
    }

    fn records(&self, after: Option<u64>, limit: usize) -> Result<Vec<ProductRecord>, ArchiveError> {
        self.call(move |client| {
            let rows = client
                .query(
                    "SELECT id, kind, created_ms, content_crc, size, station, received_unix_ms FROM products
                     WHERE $1::BIGINT IS NULL OR id > $1 ORDER BY id LIMIT $2",
                    &[&after.map(to_sql), &(limit as i64)],
                )
                .map_err(storage)?;
            rows.iter()
                .map(|row| {
                    let id = from_sql(row.get(0));
                    let code: i16 = row.get(1);
                    let kind = kind_of(code).ok_or_else(|| ArchiveError::Corrupt {
                        key: id.to_string(),
                        message: format!("kind {code}"),
                    })?;
                    Ok(ProductRecord {
                        id,
                        kind,
                        created_ms: row.get(2),
                        content_crc: row.get::<_, i64>(3) as u32,
                        size: row.get::<_, i64>(4) as u64,
                        station: row.get(5),
                        received_unix_ms: row.get(6),
                    })
                })
                .collect()
        })
    }

    fn detections(&self, query: &DetectionQuery) -> Result<Vec<DetectionRecord>, ArchiveError> {
        let query = query.clone();
        self.call(move |client| {
            let sql = format!(
                "SELECT product_id, idx, frame_id, frame_time_ms, model, class_name, score, x_min, y_min, x_max, y_max,
                        latitude, longitude, oriented
                 FROM detections WHERE {DETECTION_FILTER}
                 ORDER BY frame_time_ms, product_id, idx OFFSET $8 LIMIT $9"
            );
            let (offset, limit) = (query.offset as i64, query.limit as i64);
            let mut params = filter_params(&query);
            params.extend([&offset as &(dyn ToSql + Sync), &limit]);
            let rows = client.query(&sql, &params).map_err(storage)?;
            rows.iter()
                .map(|row| {
                    Ok(DetectionRecord {
                        product_id: from_sql(row.get(0)),
                        index: row.get::<_, i32>(1) as u32,
                        frame_id: from_sql(row.get(2)),
                        frame_time_ms: row.get(3),
                        model: row.get(4),
                        class_name: row.get(5),
                        score: row.get(6),
                        pixel_box: [row.get(7), row.get(8), row.get(9), row.get(10)],
                        latitude: row.get(11),
                        longitude: row.get(12),
                        oriented: row.get::<_, Option<String>>(13).as_deref().map(parse_oriented).transpose()?,
                    })
                })
                .collect()
        })
    }

    fn detection_cells(&self, query: &DetectionQuery, cell_deg: f64) -> Result<Vec<DetectionCell>, ArchiveError> {
        let query = query.clone();
        self.call(move |client| {
            let sql = format!(
                "SELECT avg(latitude), avg(longitude), count(*) FROM detections WHERE {DETECTION_FILTER}
                 GROUP BY floor(latitude / $8), floor(longitude / $8)"
            );
            let mut params = filter_params(&query);
            params.push(&cell_deg);
            let rows = client.query(&sql, &params).map_err(storage)?;
            Ok(rows
                .iter()
                .map(|row| DetectionCell {
                    latitude: row.get(0),
                    longitude: row.get(1),
                    count: row.get::<_, i64>(2) as u64,
                })
                .collect())
        })
    }

    fn timeline(&self, query: &TimelineQuery) -> Result<Vec<Vec<u8>>, ArchiveError> {
        let query = *query;
        self.call(move |client| {
            let order = if query.newest_first { "DESC" } else { "ASC" };
            let sql = format!(
                "SELECT envelope FROM products WHERE kind = $1 AND created_ms >= $2 AND created_ms < $3
                 ORDER BY created_ms {order}, id {order} LIMIT $4"
            );
            let rows = client
                .query(&sql, &[&(query.kind as i16), &query.from_ms, &query.to_ms, &(query.limit as i64)])
                .map_err(storage)?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
    }

    fn chip(&self, frame_id: u64, index: u32) -> Result<Option<Vec<u8>>, ArchiveError> {
        self.call(move |client| {
            Ok(client
                .query_opt(
                    "SELECT p.envelope FROM chips c JOIN products p ON p.id = c.product_id
                     WHERE c.frame_id = $1 AND c.detection_index = $2",
                    &[&to_sql(frame_id), &(index as i32)],
                )
                .map_err(storage)?
                .map(|row| row.get(0)))
        })
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn reserve_uplink_arsns(&self, count: u64) -> Result<u64, ArchiveError> {
        let count = count as i64;
        self.call(move |client| {
            let row = client
                .query_one(
                    "INSERT INTO uplink (id, next_arsn) VALUES (1, 1 + $1::BIGINT) ON CONFLICT (id)
                     DO UPDATE SET next_arsn = uplink.next_arsn + $1::BIGINT RETURNING next_arsn - $1::BIGINT",
                    &[&count],
                )
                .map_err(storage)?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    fn record_contact(&self, unix_ms: i64) -> Result<(), ArchiveError> {
        self.call(move |client| {
            client.execute("INSERT INTO contacts (unix_ms) VALUES ($1)", &[&unix_ms]).map_err(storage)?;
            Ok(())
        })
    }

    fn contacts_since(&self, unix_ms: i64) -> Result<u64, ArchiveError> {
        self.call(move |client| {
            let row =
                client.query_one("SELECT count(*) FROM contacts WHERE unix_ms > $1", &[&unix_ms]).map_err(storage)?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    fn downlink_replay_marks(&self, spi: u16) -> Result<Vec<(u8, u64)>, ArchiveError> {
        self.call(move |client| {
            let rows = client
                .query("SELECT vcid, last_arsn FROM downlink_replay WHERE spi = $1", &[&i32::from(spi)])
                .map_err(storage)?;
            Ok(rows.iter().map(|row| (row.get::<_, i16>(0) as u8, row.get::<_, i64>(1) as u64)).collect())
        })
    }

    fn raise_downlink_replay_marks(&self, spi: u16, marks: &[(u8, u64)]) -> Result<(), ArchiveError> {
        let marks: Vec<(i16, i64)> = marks.iter().map(|&(vcid, mark)| (i16::from(vcid), mark as i64)).collect();
        self.call(move |client| {
            let mut transaction = client.transaction().map_err(storage)?;
            for (vcid, mark) in &marks {
                transaction
                    .execute(
                        "INSERT INTO downlink_replay (spi, vcid, last_arsn) VALUES ($1, $2, $3)
                         ON CONFLICT (spi, vcid) DO UPDATE SET last_arsn = GREATEST(downlink_replay.last_arsn, $3)",
                        &[&i32::from(spi), vcid, mark],
                    )
                    .map_err(storage)?;
            }
            transaction.commit().map_err(storage)
        })
    }

    fn audit(&self, entry: &AuditEntry) -> Result<u64, ArchiveError> {
        let entry = entry.clone();
        self.call(move |client| {
            let row = client
                .query_one(
                    "INSERT INTO audit (unix_ms, operator, command, outcome) VALUES ($1, $2, $3, $4) RETURNING id",
                    &[&entry.unix_ms, &entry.operator, &entry.command, &entry.outcome],
                )
                .map_err(storage)?;
            Ok(row.get::<_, i64>(0) as u64)
        })
    }

    fn conflicts(&self) -> Result<Vec<(u64, Vec<u8>)>, ArchiveError> {
        self.call(|client| {
            let rows =
                client.query("SELECT id, envelope FROM conflicts ORDER BY id, envelope_crc", &[]).map_err(storage)?;
            Ok(rows.iter().map(|row| (from_sql(row.get(0)), row.get(1))).collect())
        })
    }

    fn command_reports(&self, command_id: u64) -> Result<Vec<Vec<u8>>, ArchiveError> {
        let command_id = to_sql(command_id);
        self.call(move |client| {
            let rows = client
                .query(
                    "SELECT p.envelope FROM command_reports r JOIN products p ON p.id = r.product_id
                     WHERE r.command_id = $1 ORDER BY p.created_ms, p.id",
                    &[&command_id],
                )
                .map_err(storage)?;
            Ok(rows.iter().map(|row| row.get(0)).collect())
        })
    }

    fn audit_entry(&self, id: u64) -> Result<Option<AuditEntry>, ArchiveError> {
        let id = to_sql(id);
        self.call(move |client| {
            let row = client
                .query_opt("SELECT id, unix_ms, operator, command, outcome FROM audit WHERE id = $1", &[&id])
                .map_err(storage)?;
            Ok(row.as_ref().map(audit_entry))
        })
    }

    fn audit_of(&self, id: u64) -> Result<Vec<AuditEntry>, ArchiveError> {
        let (id, pattern) = (to_sql(id), format!("{}%", super::audit_prefix(id)));
        let follow_up = super::AUDIT_FOLLOW_UP as i64;
        self.call(move |client| {
            let rows = client
                .query(
                    "SELECT id, unix_ms, operator, command, outcome FROM audit
                     WHERE id = $1 OR (id > $1 AND id <= $1 + $3 AND outcome LIKE $2) ORDER BY id",
                    &[&id, &pattern, &follow_up],
                )
                .map_err(storage)?;
            Ok(rows.iter().map(audit_entry).collect())
        })
    }

    fn enqueue_command(&self, id: u64) -> Result<(), ArchiveError> {
        let id = to_sql(id);
        self.call(move |client| {
            client.execute("INSERT INTO command_queue VALUES ($1) ON CONFLICT DO NOTHING", &[&id]).map_err(storage)?;
            Ok(())
        })
    }

    fn queued_commands(&self) -> Result<Vec<u64>, ArchiveError> {
        self.call(|client| {
            let rows = client.query("SELECT id FROM command_queue ORDER BY id", &[]).map_err(storage)?;
            Ok(rows.iter().map(|row| from_sql(row.get(0))).collect())
        })
    }

    fn dequeue_command(&self, id: u64) -> Result<bool, ArchiveError> {
        let id = to_sql(id);
        self.call(move |client| {
            Ok(client.execute("DELETE FROM command_queue WHERE id = $1", &[&id]).map_err(storage)? == 1)
        })
    }

    fn audit_trail(&self, limit: usize) -> Result<Vec<AuditEntry>, ArchiveError> {
        self.call(move |client| {
            let rows = client
                .query(
                    "SELECT id, unix_ms, operator, command, outcome FROM audit ORDER BY id DESC LIMIT $1",
                    &[&(limit as i64)],
                )
                .map_err(storage)?;
            Ok(rows.iter().map(audit_entry).collect())
        })
    }
}
