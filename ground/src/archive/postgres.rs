//! The shared archive on PostgreSQL: several ground processes (stations) write one archive. A
//! product's row, and its detections, go in one transaction; `ON CONFLICT (id) DO NOTHING` makes
//! the first writer win when two processes store the same product at once.
//!
//! The synchronous `postgres` client runs a runtime of its own, which may not run inside the
//! service's tokio runtime, so the client lives on a thread of its own and calls reach it through
//! a channel.

use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};

use kestrel_link::product::{Body, Kind, Product};
use postgres::types::ToSql;
use postgres::{Client, NoTls};

use super::{
    Archive, ArchiveError, AuditEntry, DetectionCell, DetectionQuery, DetectionRecord, ProductRecord, Stored,
    TimelineQuery, detection_records, record,
};

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
CREATE INDEX IF NOT EXISTS detections_by_time ON detections (frame_time_ms, product_id, idx);
CREATE INDEX IF NOT EXISTS products_by_kind_time ON products (kind, created_ms, id);
CREATE TABLE IF NOT EXISTS chips (
    frame_id BIGINT NOT NULL,
    detection_index INTEGER NOT NULL,
    product_id BIGINT NOT NULL REFERENCES products (id),
    PRIMARY KEY (frame_id, detection_index)
);
CREATE TABLE IF NOT EXISTS uplink (id INTEGER PRIMARY KEY, next_arsn BIGINT NOT NULL);
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
     AND latitude BETWEEN $4 AND $5 AND longitude BETWEEN $6 AND $7";

fn filter_params(query: &DetectionQuery) -> Vec<&(dyn ToSql + Sync)> {
    let [west, south, east, north] = query.bbox.as_ref().unwrap_or(&WHOLE_EARTH);
    vec![&query.from_ms, &query.to_ms, &query.class, south, north, west, east]
}

const WHOLE_EARTH: [f64; 4] = [-180.0, -90.0, 180.0, 90.0];

type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// Ids are u64 on the link and BIGINT in PostgreSQL: stored bit for bit.
fn to_sql(id: u64) -> i64 {
    id as i64
}

fn from_sql(id: i64) -> u64 {
    id as u64
}

fn kind_of(code: i16) -> Option<Kind> {
    [Kind::Detections, Kind::Chip, Kind::Thumbnail, Kind::Housekeeping, Kind::Event]
        .into_iter()
        .find(|k| *k as i16 == code)
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
        let batch = arrivals
            .iter()
            .map(|&(product, bytes)| {
                let chip = match &product.body {
                    Body::Chip(chip) => Some((to_sql(chip.frame_id), chip.detection_index as i32)),
                    _ => None,
                };
                Ok((
                    record(product, bytes, station, received_unix_ms)?,
                    detection_records(product),
                    chip,
                    bytes.to_vec(),
                ))
            })
            .collect::<Result<Vec<_>, ArchiveError>>()?;
        // one transaction for the batch: one commit (one WAL flush) makes it all durable
        self.call(move |client| {
            let mut tx = client.transaction().map_err(storage)?;
            let mut outcomes = Vec::with_capacity(batch.len());
            for (record, detections, chip, bytes) in &batch {
                let inserted = tx
                    .query(
                        "INSERT INTO products (id, kind, created_ms, content_crc, size, station, received_unix_ms, envelope)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING RETURNING id",
                        &[
                            &to_sql(record.id),
                            &(record.kind as i16),
                            &record.created_ms,
                            &i64::from(record.content_crc),
                            &(record.size as i64),
                            &record.station,
                            &record.received_unix_ms,
                            bytes,
                        ],
                    )
                    .map_err(storage)?;
                if inserted.is_empty() {
                    let row = tx.query_one("SELECT envelope FROM products WHERE id = $1", &[&to_sql(record.id)]).map_err(storage)?;
                    let existing: Vec<u8> = row.get(0);
                    if &existing == bytes {
                        outcomes.push(Stored::Duplicate);
                    } else {
                        tx.execute(
                            "INSERT INTO conflicts VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                            &[
                                &to_sql(record.id),
                                &i64::from(super::envelope_crc(bytes)),
                                bytes,
                                &record.station,
                                &record.received_unix_ms,
                            ],
                        )
                        .map_err(storage)?;
                        outcomes.push(Stored::Conflict);
                    }
                    continue;
                }
                if let Some((frame_id, index)) = chip {
                    tx.execute(
                        "INSERT INTO chips VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        &[frame_id, index, &to_sql(record.id)],
                    )
                    .map_err(storage)?;
                }
                for d in detections {
                    tx.execute(
                        "INSERT INTO detections VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                        &[
                            &to_sql(d.product_id),
                            &(d.index as i32),
                            &to_sql(d.frame_id),
                            &d.frame_time_ms,
                            &d.model,
                            &d.class_name,
                            &d.score,
                            &d.pixel_box[0],
                            &d.pixel_box[1],
                            &d.pixel_box[2],
                            &d.pixel_box[3],
                            &d.latitude,
                            &d.longitude,
                        ],
                    )
                    .map_err(storage)?;
                }
                outcomes.push(Stored::Inserted);
            }
            tx.commit().map_err(storage)?;
            Ok(outcomes)
        })
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
                        latitude, longitude
                 FROM detections WHERE {DETECTION_FILTER}
                 ORDER BY frame_time_ms, product_id, idx OFFSET $8 LIMIT $9"
            );
            let (offset, limit) = (query.offset as i64, query.limit as i64);
            let mut params = filter_params(&query);
            params.extend([&offset as &(dyn ToSql + Sync), &limit]);
            let rows = client.query(&sql, &params).map_err(storage)?;
            Ok(rows
                .iter()
                .map(|row| DetectionRecord {
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
                })
                .collect())
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

    fn audit_trail(&self, limit: usize) -> Result<Vec<AuditEntry>, ArchiveError> {
        self.call(move |client| {
            let rows = client
                .query(
                    "SELECT id, unix_ms, operator, command, outcome FROM audit ORDER BY id DESC LIMIT $1",
                    &[&(limit as i64)],
                )
                .map_err(storage)?;
            Ok(rows
                .iter()
                .map(|row| AuditEntry {
                    id: row.get::<_, i64>(0) as u64,
                    unix_ms: row.get(1),
                    operator: row.get(2),
                    command: row.get(3),
                    outcome: row.get(4),
                })
                .collect())
        })
    }
}
