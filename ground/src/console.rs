//! The operator console: a page and its script, built into the binary (no files to find at run
//! time, no tile server: the coastline is Natural Earth's, bundled). Only the names listed here
//! are served, so no request path reaches the file system.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Every console file: name, media type, content.
const FILES: &[(&str, &str, &[u8])] = &[
    ("console.js", "text/javascript; charset=utf-8", include_bytes!("../console/console.js")),
    ("console.css", "text/css; charset=utf-8", include_bytes!("../console/console.css")),
    ("land-50m.json", "application/json", include_bytes!("../console/vendor/land-50m.json")),
];

const INDEX: &str = include_str!("../console/index.html");

pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/", get(index)).route("/console/{name}", get(file))
}

async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response()
}

async fn file(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(known, _, _)| *known == name) {
        Some((_, media_type, content)) => ([(header::CONTENT_TYPE, *media_type)], *content).into_response(),
        None => (StatusCode::NOT_FOUND, format!("no console file `{name}`")).into_response(),
    }
}
