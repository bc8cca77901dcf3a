//! The HTTP JSON API: archive contents (products, detections and their grid cells, chips, frames,
//! events, telemetry), predictions (passes, ground track), station and link statistics, commands,
//! Prometheus metrics; and the console's files.

use std::fmt::Write;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use kestrel_link::product::{Body, Chip, Kind, Product, Thumbnail};
use serde::Deserialize;

use crate::archive::{ArchiveError, AuditEntry, DetectionQuery, TimelineQuery};
use crate::predict::MAX_WINDOW_MS;
use crate::serve::{CommandError, Release, Service};
use kestrel_link::uplink::Telecommand;

/// Most rows one request returns.
pub const MAX_PAGE: usize = 10_000;
/// Largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest model file an upload request may carry.
pub const MAX_MODEL_BODY: usize = 8 << 20;
/// The earliest and the latest time a time parameter (`from_ms`, `to_ms`) may name, ms since the
/// Unix epoch: 1970-01-01 and 2100-01-01 (UTC). Outside them a time is a mistake (the year 9999,
/// the ends of i64), and nothing archived or predicted is there.
pub const EARLIEST_MS: i64 = 0;
pub const LATEST_MS: i64 = 4_102_444_800_000;

pub fn router(service: Arc<Service>) -> Router {
    Router::new()
        .route("/api/stats", get(stats))
        .route("/api/products", get(products))
        .route("/api/products/{id}", get(product))
        .route("/api/products/{id}/image", get(product_image))
        .route("/api/openapi.json", get(|| async { Json(crate::openapi::document()) }))
        .route("/api/detections", get(detections))
        .route("/api/detections.geojson", get(detections_geojson))
        .route("/api/detections/cells", get(detection_cells))
        .route("/api/chips/{frame_id}/{index}", get(chip))
        .route("/api/frames", get(frames))
        .route("/api/events", get(events))
        .route("/api/telemetry", get(telemetry))
        .route("/api/passes", get(passes))
        .route("/api/track", get(track))
        .route("/api/sites", get(sites))
        .route("/api/dictionary", get(dictionary))
        .route("/api/commands", get(audit_trail).post(command))
        .route("/api/commands/queue", get(command_queue))
        .route("/api/commands/awaiting", get(awaiting_confirmation))
        .route("/api/commands/{id}", get(command_stages).delete(cancel_command))
        .route("/api/commands/{id}/confirm", post(confirm_command))
        .route("/api/models/{name}", post(upload_model))
        .route("/metrics", get(metrics))
        .merge(crate::console::router())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(service)
}

/// The name of the operator whose token the request carries.
fn operator(service: &Service, headers: &HeaderMap) -> Option<String> {
    let token = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token)?;
    service.operator(token).map(str::to_owned)
}

/// The token of an `Authorization: Bearer TOKEN` value; the scheme is matched without regard to
/// case (RFC 7235 section 2.1), and more than one space may follow it.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        Json(serde_json::json!({ "error": "commands need an operator's token (Authorization: Bearer ...)" })),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct CommandRequest {
    command: Telecommand,
}

async fn command(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Json(request): Json<CommandRequest>,
) -> Response {
    let Some(operator) = operator(&service, &headers) else { return unauthorized() };
    let sent = tokio::task::block_in_place(|| service.send_command(&operator, &request.command));
    command_response(sent)
}

/// `GET /api/dictionary`: the mission dictionary, its limits the mission file's.
async fn dictionary(State(service): State<Arc<Service>>) -> Response {
    match &service.dictionary {
        Some(dictionary) => Json(dictionary).into_response(),
        None => error(StatusCode::NOT_FOUND, "this ground was started without a mission dictionary"),
    }
}

/// `GET /api/commands/queue`: the commands waiting for a station, oldest first.
async fn command_queue(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    audit_entries_for_operator(&service, &headers, Service::command_queue)
}

/// `GET /api/commands/awaiting`: the hazardous commands awaiting confirmation, oldest first.
async fn awaiting_confirmation(State(service): State<Arc<Service>>, headers: HeaderMap) -> Response {
    audit_entries_for_operator(&service, &headers, Service::awaiting_confirmation)
}

/// Audit entries an operator asked for: 401 without an operator's token.
fn audit_entries_for_operator(
    service: &Service,
    headers: &HeaderMap,
    read: fn(&Service) -> Result<Vec<AuditEntry>, ArchiveError>,
) -> Response {
    if operator(service, headers).is_none() {
        return unauthorized();
    }
    match tokio::task::block_in_place(|| read(service)) {
        Ok(entries) => Json(entries).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `POST /api/commands/{id}/confirm`: an operator confirms a hazardous command, which is then
/// released (sent, or queued with no station).
async fn confirm_command(State(service): State<Arc<Service>>, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    let Some(operator) = operator(&service, &headers) else { return unauthorized() };
    command_response(tokio::task::block_in_place(|| service.confirm(&operator, id)))
}

/// `DELETE /api/commands/{id}`: a queued command, or one awaiting confirmation, cancelled.
async fn cancel_command(State(service): State<Arc<Service>>, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    let Some(operator) = operator(&service, &headers) else { return unauthorized() };
    match tokio::task::block_in_place(|| service.cancel_command(&operator, id)) {
        Ok(true) => Json(serde_json::json!({ "id": id, "cancelled": true })).into_response(),
        Ok(false) => {
            error(StatusCode::NOT_FOUND, format!("command {id} is not queued (sent, cancelled, or never queued)"))
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

fn command_response(sent: Result<(u64, Release), CommandError>) -> Response {
    match sent {
        Ok((id, Release::AwaitingConfirmation)) => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({
                "id": id,
                "stations": 0,
                "awaiting_confirmation": true,
                "confirm": format!("/api/commands/{id}/confirm"),
            })),
        )
            .into_response(),
        Ok((id, Release::Queued)) => {
            (StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id, "stations": 0, "queued": true }))).into_response()
        }
        Ok((id, Release::Sent(0))) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "id": id, "stations": 0, "error": "no station connected; not sent" })),
        )
            .into_response(),
        Ok((id, Release::Sent(stations))) => {
            (StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id, "stations": stations }))).into_response()
        }
        Err(CommandError::TooLarge) => error(StatusCode::PAYLOAD_TOO_LARGE, CommandError::TooLarge.to_string()),
        Err(CommandError::BadSignature) => error(StatusCode::BAD_REQUEST, CommandError::BadSignature.to_string()),
        Err(CommandError::Invalid(why)) => error(StatusCode::BAD_REQUEST, why),
        Err(e @ CommandError::NotAwaiting(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    /// Hex ed25519 signature of the file's SHA-256 (`flight-tools sign-model` writes it in the manifest).
    signature: String,
}

/// `POST /api/models/{name}?signature=HEX` with the ONNX file as the body: uploads it to the
/// spacecraft as the new weights of manifest model `name`.
async fn upload_model(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<UploadQuery>,
    body: axum::body::Body,
) -> Response {
    // the body is read only for the operator: a stranger cannot make the ground hold 8 MiB
    let Some(operator) = operator(&service, &headers) else { return unauthorized() };
    let valid_name =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c));
    if !valid_name {
        return error(StatusCode::BAD_REQUEST, format!("`{name}` is not a model name (letters, digits, - and _)"));
    }
    let Some(signature) = kestrel_link::hex::decode::<64>(&query.signature) else {
        return error(StatusCode::BAD_REQUEST, "`signature` must be 128 hexadecimal digits (64 bytes)");
    };
    let Ok(file) = axum::body::to_bytes(body, MAX_MODEL_BODY).await else {
        let message = format!("the model file is larger than {MAX_MODEL_BODY} bytes, or did not arrive whole");
        return error(StatusCode::PAYLOAD_TOO_LARGE, message);
    };
    if file.is_empty() {
        return error(StatusCode::BAD_REQUEST, "the request body (the model file) is empty");
    }
    let sent = tokio::task::block_in_place(|| service.upload_model(&operator, &name, &file, signature.to_vec()));
    command_response(sent)
}

async fn audit_trail(State(service): State<Arc<Service>>, headers: HeaderMap, Query(page): Query<Page>) -> Response {
    if operator(&service, &headers).is_none() {
        return unauthorized();
    }
    let limit = match page_limit(page.limit, 100) {
        Ok(limit) => limit,
        Err(refusal) => return refusal.into_response(),
    };
    match service.archive.audit_trail(limit) {
        Ok(entries) => Json(entries).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/commands/{id}`: a command's life as stages with times ([`crate::verification`]).
async fn command_stages(State(service): State<Arc<Service>>, headers: HeaderMap, Path(id): Path<u64>) -> Response {
    if operator(&service, &headers).is_none() {
        return unauthorized();
    }
    match tokio::task::block_in_place(|| service.command_life(id)) {
        Ok(Some(life)) => Json(life).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no command {id} in the audit trail")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A refusal: what `error` makes, before it is made (small enough to return in a `Result`).
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn bad_request(message: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message)
}

/// A page size: `default` when there is none, refused (400) above [`MAX_PAGE`].
fn page_limit(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match limit {
        Some(n) if n > MAX_PAGE => Err(bad_request(format!("`limit` must be at most {MAX_PAGE}, found {n}"))),
        limit => Ok(limit.unwrap_or(default)),
    }
}

/// A time parameter, refused (400) outside [`EARLIEST_MS`] to [`LATEST_MS`].
fn time_param(name: &str, value: Option<i64>) -> Result<Option<i64>, ApiError> {
    match value {
        Some(ms) if !(EARLIEST_MS..=LATEST_MS).contains(&ms) => Err(bad_request(format!(
            "`{name}` must be within {EARLIEST_MS} (1970-01-01) and {LATEST_MS} (2100-01-01), ms since the Unix \
             epoch, found {ms}"
        ))),
        value => Ok(value),
    }
}

/// `bbox=west,south,east,north` in degrees: four finite numbers, longitudes within -180 to 180,
/// latitudes within -90 to 90, south not above north. West above east is a box across the
/// antimeridian.
fn bbox_param(text: &str) -> Result<[f64; 4], ApiError> {
    let values: Vec<f64> = text
        .split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad_request(format!("`bbox` `{text}`: expected west,south,east,north in degrees")))?;
    let [west, south, east, north] = values[..] else {
        return Err(bad_request(format!("`bbox` `{text}`: expected four numbers, west,south,east,north")));
    };
    let within = |v: f64, limit: f64| v.is_finite() && (-limit..=limit).contains(&v);
    if !(within(west, 180.0) && within(east, 180.0)) {
        return Err(bad_request(format!("`bbox` `{text}`: west and east must be longitudes within -180 to 180")));
    }
    if !(within(south, 90.0) && within(north, 90.0)) {
        return Err(bad_request(format!("`bbox` `{text}`: south and north must be latitudes within -90 to 90")));
    }
    if south > north {
        return Err(bad_request(format!("`bbox` `{text}`: south is above north")));
    }
    Ok([west, south, east, north])
}

/// Products and detections in the archive.
fn archive_counts(service: &Service) -> Result<(u64, u64), ArchiveError> {
    Ok((service.archive.product_count()?, service.archive.detection_count()?))
}

async fn stats(State(service): State<Arc<Service>>) -> Response {
    let stations = service.station_list();
    match archive_counts(&service) {
        Ok((products, detections)) => Json(serde_json::json!({
            "archive": { "products": products, "detections": detections },
            "stations": stations,
            "sign_on_refusals": service.sign_on_refusals(),
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct Page {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn products(State(service): State<Arc<Service>>, Query(page): Query<Page>) -> Response {
    let limit = match page_limit(page.limit, 100) {
        Ok(limit) => limit,
        Err(refusal) => return refusal.into_response(),
    };
    match service.archive.records(page.after, limit) {
        Ok(records) => Json(records).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn product(State(service): State<Arc<Service>>, Path(id): Path<u64>) -> Response {
    match service.archive.product_bytes(id) {
        Ok(Some(bytes)) => match Product::decode(&bytes) {
            Ok(product) => Json(product).into_response(),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("stored product {id} no longer verifies: {e}")),
        },
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no product {id}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn product_image(State(service): State<Arc<Service>>, Path(id): Path<u64>) -> Response {
    match service.archive.product_bytes(id) {
        Ok(Some(bytes)) => png_response(&bytes, &format!("product {id}")),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no product {id}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// The PNG a stored chip or thumbnail envelope carries.
fn png_response(envelope: &[u8], what: &str) -> Response {
    match Product::decode(envelope).map(|p| p.body) {
        Ok(Body::Chip(Chip { png, .. }) | Body::Thumbnail(Thumbnail { png, .. })) => {
            ([(header::CONTENT_TYPE, "image/png"), (header::CACHE_CONTROL, "max-age=86400, immutable")], png)
                .into_response()
        }
        Ok(_) => error(StatusCode::NOT_FOUND, format!("{what} is not an image")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("stored {what} no longer verifies: {e}")),
    }
}

async fn chip(State(service): State<Arc<Service>>, Path((frame_id, index)): Path<(u64, u32)>) -> Response {
    match service.archive.chip(frame_id, index) {
        Ok(Some(bytes)) => png_response(&bytes, &format!("the chip of detection {index} of frame {frame_id}")),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no chip of detection {index} of frame {frame_id}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// A time window and a page size: `from_ms`, `to_ms`, `limit`.
#[derive(Debug, Deserialize)]
struct Window {
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    limit: Option<usize>,
}

/// The products of `kind` in a window, the latest first, decoded (each verified again).
fn latest(service: &Service, kind: Kind, window: &Window) -> Result<Vec<Product>, ApiError> {
    let query = TimelineQuery {
        kind,
        from_ms: time_param("from_ms", window.from_ms)?.unwrap_or(i64::MIN),
        to_ms: time_param("to_ms", window.to_ms)?.unwrap_or(i64::MAX),
        limit: page_limit(window.limit, 100)?,
        newest_first: true,
    };
    let envelopes =
        service.archive.timeline(&query).map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    envelopes
        .iter()
        .map(|bytes| {
            Product::decode(bytes).map_err(|e| {
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("a stored {kind:?} product no longer verifies: {e}"),
                )
            })
        })
        .collect()
}

/// The products of `kind` in a window as JSON, each through `view` (`None` leaves it out).
fn timeline_json(
    service: &Service,
    kind: Kind,
    window: &Window,
    oldest_first: bool,
    view: impl Fn(&Product) -> Option<serde_json::Value>,
) -> Response {
    match latest(service, kind, window) {
        Ok(mut products) => {
            if oldest_first {
                products.reverse();
            }
            Json(products.iter().filter_map(view).collect::<Vec<_>>()).into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// `GET /api/frames`: the frames whose thumbnails arrived, latest first, with their footprints.
async fn frames(State(service): State<Arc<Service>>, Query(window): Query<Window>) -> Response {
    timeline_json(&service, Kind::Thumbnail, &window, false, |p| match &p.body {
        Body::Thumbnail(t) => Some(serde_json::json!({
            "product_id": p.id, "frame_id": t.frame_id, "frame_time_ms": t.frame_time_ms, "footprint": t.footprint,
        })),
        _ => None,
    })
}

/// `GET /api/events`: events from the spacecraft, latest first.
async fn events(State(service): State<Arc<Service>>, Query(window): Query<Window>) -> Response {
    timeline_json(&service, Kind::Event, &window, false, |p| match &p.body {
        Body::Event(e) => Some(serde_json::json!({
            "product_id": p.id, "time_ms": e.time_ms, "severity": e.severity, "source": e.source, "message": e.message,
        })),
        _ => None,
    })
}

/// `GET /api/telemetry`: the latest housekeeping samples, in time order (ready to plot).
async fn telemetry(State(service): State<Arc<Service>>, Query(window): Query<Window>) -> Response {
    timeline_json(&service, Kind::Housekeeping, &window, true, |p| match &p.body {
        Body::Housekeeping(h) => {
            let values: serde_json::Map<_, _> =
                h.values.iter().map(|(k, v)| (k.clone(), serde_json::json!(v))).collect();
            Some(serde_json::json!({ "time_ms": h.time_ms, "values": values }))
        }
        _ => None,
    })
}

/// A prediction window; without one, `before_ms` ahead of the spacecraft's latest housekeeping
/// time (or the wall clock when there is none) to `after_ms` past it.
fn prediction_window(
    service: &Service,
    window: &Window,
    before_ms: i64,
    after_ms: i64,
) -> Result<(i64, i64), ApiError> {
    page_limit(window.limit, 0)?;
    let (from_ms, to_ms) = (time_param("from_ms", window.from_ms)?, time_param("to_ms", window.to_ms)?);
    // the archive is read for the spacecraft's time only when a bound is missing
    let (from, to) = match (from_ms, to_ms) {
        (Some(from), Some(to)) => (from, to),
        (from, to) => {
            let now = service.spacecraft_time_ms();
            (from.unwrap_or(now.saturating_sub(before_ms)), to.unwrap_or(now.saturating_add(after_ms)))
        }
    };
    // checked: bounds near the ends of i64 must be refused, not wrap into a window that passes
    if to.checked_sub(from).is_none_or(|span| span <= 0 || span > MAX_WINDOW_MS) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("the window must be positive and at most {} days long", MAX_WINDOW_MS / 86_400_000),
        ));
    }
    Ok((from, to))
}

/// `GET /api/passes`: predicted passes over every station (default: the next 24 hours).
async fn passes(State(service): State<Arc<Service>>, Query(window): Query<Window>) -> Response {
    let Some(predictions) = &service.predictions else { return no_predictions() };
    let (from, to) = match prediction_window(&service, &window, 3_600_000, 86_400_000) {
        Ok(w) => w,
        Err(refusal) => return refusal.into_response(),
    };
    match tokio::task::block_in_place(|| predictions.passes(from, to)) {
        Ok(passes) => Json(passes).into_response(),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct TrackStep {
    step_ms: Option<i64>,
}

/// `GET /api/track`: the predicted ground track (default: half an orbit back, one ahead).
async fn track(
    State(service): State<Arc<Service>>,
    Query(window): Query<Window>,
    Query(step): Query<TrackStep>,
) -> Response {
    let Some(predictions) = &service.predictions else { return no_predictions() };
    let period = predictions.period_ms();
    let (from, to) = match prediction_window(&service, &window, period / 2, period) {
        Ok(w) => w,
        Err(refusal) => return refusal.into_response(),
    };
    let step = step.step_ms.unwrap_or(30_000).max((to - from) / MAX_PAGE as i64).max(1);
    match predictions.ground_track(from, to, step) {
        Ok(track) => Json(track).into_response(),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

/// `GET /api/sites`: the ground stations where the mission file puts them.
async fn sites(State(service): State<Arc<Service>>) -> Response {
    match &service.predictions {
        Some(predictions) => Json(predictions.sites()).into_response(),
        None => no_predictions(),
    }
}

fn no_predictions() -> Response {
    error(StatusCode::NOT_FOUND, "the mission file has no [thermal] section (TLE and ground stations) to predict from")
}

/// The detection filters of a request: `from_ms`, `to_ms`, `class`, `bbox=west,south,east,north`, `limit`.
#[derive(Debug, Deserialize)]
struct DetectionParams {
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    class: Option<String>,
    bbox: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

impl DetectionParams {
    /// The query, or what is wrong with the parameters (a 400 naming the parameter).
    fn query(self) -> Result<DetectionQuery, ApiError> {
        let bbox = self.bbox.as_deref().map(bbox_param).transpose()?;
        let all = DetectionQuery::default();
        Ok(DetectionQuery {
            from_ms: time_param("from_ms", self.from_ms)?.unwrap_or(all.from_ms),
            to_ms: time_param("to_ms", self.to_ms)?.unwrap_or(all.to_ms),
            class: self.class,
            bbox,
            offset: self.offset.unwrap_or(0),
            limit: page_limit(self.limit, all.limit)?,
        })
    }
}

async fn detections(State(service): State<Arc<Service>>, Query(params): Query<DetectionParams>) -> Response {
    let query = match params.query() {
        Ok(query) => query,
        Err(refusal) => return refusal.into_response(),
    };
    match service.archive.detections(&query) {
        Ok(found) => Json(found).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct CellSize {
    cell_deg: f64,
}

/// `GET /api/detections/cells`: matching detections counted in a grid of `cell_deg` degrees.
async fn detection_cells(
    State(service): State<Arc<Service>>,
    Query(filters): Query<DetectionParams>,
    Query(cell): Query<CellSize>,
) -> Response {
    if !(0.001..=90.0).contains(&cell.cell_deg) {
        return error(StatusCode::BAD_REQUEST, format!("cell_deg must be within 0.001 to 90, found {}", cell.cell_deg));
    }
    let query = match filters.query() {
        Ok(query) => query,
        Err(refusal) => return refusal.into_response(),
    };
    match service.archive.detection_cells(&query, cell.cell_deg) {
        Ok(cells) => Json(cells).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn detections_geojson(State(service): State<Arc<Service>>, Query(params): Query<DetectionParams>) -> Response {
    let query = match params.query() {
        Ok(query) => query,
        Err(refusal) => return refusal.into_response(),
    };
    match service.archive.detections(&query) {
        Ok(found) => {
            ([(header::CONTENT_TYPE, "application/geo+json")], Json(crate::geojson::feature_collection(&found)))
                .into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Reads one counter of a station's status.
type StationCounter = fn(&crate::serve::StationStatus) -> u64;

async fn metrics(State(service): State<Arc<Service>>) -> Response {
    let mut out = String::new();
    let (products, detections) = match archive_counts(&service) {
        Ok(counts) => counts,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let _ = writeln!(out, "# TYPE kestrel_archive_products gauge\nkestrel_archive_products {products}");
    let _ = writeln!(out, "# TYPE kestrel_archive_detections gauge\nkestrel_archive_detections {detections}");
    let stations = service.station_list();
    let series: [(&str, &str, StationCounter); 8] = [
        ("kestrel_station_bytes_received_total", "counter", |s| s.bytes_received),
        ("kestrel_station_cadus_total", "counter", |s| s.link.cadus),
        ("kestrel_station_rs_corrected_symbols_total", "counter", |s| s.link.rs_corrected_symbols),
        ("kestrel_station_rs_uncorrectable_total", "counter", |s| s.link.rs_uncorrectable),
        ("kestrel_station_authentication_failures_total", "counter", |s| s.link.authentication_failures),
        ("kestrel_station_replayed_frames_total", "counter", |s| s.link.replayed_frames),
        ("kestrel_station_products_stored_total", "counter", |s| s.ingest.products_stored),
        ("kestrel_station_products_rejected_total", "counter", |s| s.ingest.products_rejected),
    ];
    for (name, kind, value) in series {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for status in &stations {
            let (station, connection) = (&status.station, status.connection);
            let _ = writeln!(out, "{name}{{station=\"{station}\",connection=\"{connection}\"}} {}", value(status));
        }
    }
    let refusals = service.sign_on_refusals();
    let _ = writeln!(out, "# TYPE kestrel_station_sign_on_refused_total counter");
    for (reason, count) in [
        ("malformed", refusals.malformed),
        ("unknown_station", refusals.unknown_station),
        ("not_authentic", refusals.not_authentic),
        ("timed_out", refusals.timed_out),
        ("over_limit", refusals.over_limit),
    ] {
        let _ = writeln!(out, "kestrel_station_sign_on_refused_total{{reason=\"{reason}\"}} {count}");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(query: &str) -> DetectionParams {
        let uri: axum::http::Uri = format!("/api/detections?{query}").parse().expect("a URI");
        Query::try_from_uri(&uri).expect("parameters").0
    }

    /// The status and message of a refused query.
    fn refusal(query: &str) -> (StatusCode, String) {
        let ApiError(status, message) = params(query).query().expect_err(query);
        (status, message)
    }

    #[test]
    fn a_bbox_that_is_not_a_box_on_the_earth_is_refused_naming_it() {
        for bad in [
            "bbox=NaN,0,10,10",
            "bbox=0,0,inf,10",
            "bbox=-inf,0,10,10",
            "bbox=0,-91,10,10",
            "bbox=0,0,181,10",
            "bbox=0,20,10,10",
            "bbox=1,2,3",
            "bbox=a,b,c,d",
        ] {
            let (status, message) = refusal(bad);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(message.starts_with("`bbox`"), "{bad}: {message}");
        }
        let across = params("bbox=170,-10,-170,10").query().expect("a box across the antimeridian");
        assert_eq!(across.bbox, Some([170.0, -10.0, -170.0, 10.0]));
        let query = params("bbox=-180,-90,180,90").query().expect("the whole earth");
        assert_eq!(query.bbox, Some([-180.0, -90.0, 180.0, 90.0]));
    }

    #[test]
    fn a_limit_above_the_maximum_and_times_out_of_range_are_refused() {
        let (status, message) = refusal(&format!("limit={}", MAX_PAGE + 1));
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(message.contains("`limit`") && message.contains(&MAX_PAGE.to_string()), "{message}");
        assert_eq!(params(&format!("limit={MAX_PAGE}")).query().expect("the maximum").limit, MAX_PAGE);
        assert_eq!(page_limit(None, 100).expect("default"), 100);
        // 9999-01-01, and before 1970
        for bad in ["to_ms=253370764800000", "from_ms=-1"] {
            let (status, message) = refusal(bad);
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
            assert!(message.starts_with(&format!("`{}`", bad.split('=').next().unwrap_or(""))), "{message}");
        }
        let query = params(&format!("from_ms={EARLIEST_MS}&to_ms={LATEST_MS}")).query().expect("the extremes");
        assert_eq!((query.from_ms, query.to_ms), (EARLIEST_MS, LATEST_MS));
    }

    #[test]
    fn the_bearer_scheme_is_matched_in_any_case() {
        for header in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR   t0k"] {
            assert_eq!(bearer_token(header), Some("t0k"), "{header}");
        }
        for header in ["Basic t0k", "Bearer", "Bearer ", "Bearert0k", "t0k"] {
            assert_eq!(bearer_token(header), None, "{header}");
        }
    }
}
