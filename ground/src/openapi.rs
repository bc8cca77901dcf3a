//! The OpenAPI 3.1 description of the HTTP API, served at `/api/openapi.json`.

use serde_json::{Value, json};

/// Every path the API serves, with its methods (the test checks the router answers each).
pub const PATHS: &[(&str, &[&str])] = &[
    ("/api/stats", &["get"]),
    ("/api/products", &["get"]),
    ("/api/products/{id}", &["get"]),
    ("/api/products/{id}/image", &["get"]),
    ("/api/detections", &["get"]),
    ("/api/detections.geojson", &["get"]),
    ("/api/detections/cells", &["get"]),
    ("/api/chips/{frame_id}/{index}", &["get"]),
    ("/api/frames", &["get"]),
    ("/api/events", &["get"]),
    ("/api/telemetry", &["get"]),
    ("/api/passes", &["get"]),
    ("/api/track", &["get"]),
    ("/api/sites", &["get"]),
    ("/api/dictionary", &["get"]),
    ("/api/commands", &["get", "post"]),
    ("/api/commands/queue", &["get"]),
    ("/api/commands/awaiting", &["get"]),
    ("/api/commands/{id}", &["get", "delete"]),
    ("/api/commands/{id}/confirm", &["post"]),
    ("/api/models/{name}", &["post"]),
    ("/api/openapi.json", &["get"]),
    ("/metrics", &["get"]),
];

fn detection_filters() -> Value {
    json!([
        { "name": "from_ms", "in": "query", "schema": time_ms(), "description": "frame time from (inclusive), ms since the Unix epoch" },
        { "name": "to_ms", "in": "query", "schema": time_ms(), "description": "frame time to (exclusive)" },
        { "name": "class", "in": "query", "schema": { "type": "string" } },
        { "name": "bbox", "in": "query", "schema": { "type": "string" }, "description": "west,south,east,north in degrees: longitudes within -180 to 180, latitudes within -90 to 90, south not above north, west above east a box across the antimeridian" },
        { "name": "offset", "in": "query", "schema": { "type": "integer" }, "description": "matches to skip (paging)" },
        { "name": "limit", "in": "query", "schema": { "type": "integer", "minimum": 0, "maximum": crate::http::MAX_PAGE, "default": 1000 } }
    ])
}

/// A time parameter's schema: ms since the Unix epoch, 1970-01-01 to 2100-01-01.
fn time_ms() -> Value {
    json!({ "type": "integer", "minimum": crate::http::EARLIEST_MS, "maximum": crate::http::LATEST_MS })
}

/// A page size's schema.
fn limit() -> Value {
    json!({ "type": "integer", "minimum": 0, "maximum": crate::http::MAX_PAGE, "default": 100 })
}

fn window(what: &str) -> Value {
    json!([
        { "name": "from_ms", "in": "query", "schema": time_ms(), "description": format!("{what} from (inclusive), ms since the Unix epoch") },
        { "name": "to_ms", "in": "query", "schema": time_ms(), "description": format!("{what} to (exclusive)") },
        { "name": "limit", "in": "query", "schema": limit() }
    ])
}

pub fn document() -> Value {
    let id =
        json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer", "format": "uint64" } }]);
    let operator = json!([{ "operator": [] }]);
    json!({
        "openapi": "3.1.0",
        "info": { "title": "Kestrel ground station", "version": env!("CARGO_PKG_VERSION") },
        "components": { "securitySchemes": { "operator": { "type": "http", "scheme": "bearer", "description": "an operator's token, its SHA-256 in the mission's ground.operators_file (`Authorization: Bearer TOKEN`, the scheme in any case)" } } },
        "paths": {
            "/api/stats": { "get": { "summary": "archive counts, and link and ingest counters per station connection", "responses": { "200": { "description": "statistics" } } } },
            "/api/products": { "get": {
                "summary": "product records in id order",
                "parameters": [ { "name": "after", "in": "query", "schema": { "type": "integer" } }, { "name": "limit", "in": "query", "schema": limit() } ],
                "responses": { "200": { "description": "records" }, "400": { "description": "a limit over the maximum" } } } },
            "/api/products/{id}": { "get": { "summary": "a product, decoded and verified again", "parameters": id, "responses": { "200": { "description": "the product" }, "404": { "description": "no such product" } } } },
            "/api/products/{id}/image": { "get": { "summary": "the PNG of a chip or thumbnail product", "parameters": id, "responses": { "200": { "description": "image/png" }, "404": { "description": "no such image product" } } } },
            "/api/detections": { "get": { "summary": "detections in frame-time order", "parameters": detection_filters(), "responses": { "200": { "description": "detections" }, "400": { "description": "a bad filter (named): a time out of range, a bbox off the Earth, a limit over the maximum" } } } },
            "/api/detections.geojson": { "get": { "summary": "detections as a GeoJSON FeatureCollection", "parameters": detection_filters(), "responses": { "200": { "description": "application/geo+json" }, "400": { "description": "a bad filter (named), as for /api/detections" } } } },
            "/api/detections/cells": { "get": {
                "summary": "matching detections counted in a latitude/longitude grid (the console's clusters): mean position and count per cell",
                "parameters": detection_filters().as_array().into_iter().flatten().cloned()
                    .chain([json!({ "name": "cell_deg", "in": "query", "required": true, "schema": { "type": "number", "minimum": 0.001, "maximum": 90 } })])
                    .collect::<Vec<_>>(),
                "responses": { "200": { "description": "cells" }, "400": { "description": "a bad filter (named, as for /api/detections) or cell size" } } } },
            "/api/chips/{frame_id}/{index}": { "get": {
                "summary": "the PNG chip of detection `index` of frame `frame_id` (flight sends chips of a frame's best detections only)",
                "parameters": [ { "name": "frame_id", "in": "path", "required": true, "schema": { "type": "integer", "format": "uint64" } }, { "name": "index", "in": "path", "required": true, "schema": { "type": "integer" } } ],
                "responses": { "200": { "description": "image/png" }, "404": { "description": "no chip of that detection arrived" } } } },
            "/api/frames": { "get": { "summary": "frames whose thumbnails arrived, latest first, with footprints (lat, lon corners); the thumbnail is /api/products/{product_id}/image", "parameters": window("frame time"), "responses": { "200": { "description": "frames" }, "400": { "description": "a time out of range or a limit over the maximum (named)" } } } },
            "/api/events": { "get": { "summary": "events from the spacecraft, latest first", "parameters": window("event time"), "responses": { "200": { "description": "events" }, "400": { "description": "a time out of range or a limit over the maximum (named)" } } } },
            "/api/telemetry": { "get": { "summary": "the latest housekeeping samples in time order: time and named values", "parameters": window("sample time"), "responses": { "200": { "description": "samples" }, "400": { "description": "a time out of range or a limit over the maximum (named)" } } } },
            "/api/passes": { "get": { "summary": "passes over the mission's ground stations predicted from its TLE (default: from an hour before the spacecraft's latest housekeeping time to a day after)", "parameters": window("AOS"), "responses": { "200": { "description": "passes" }, "400": { "description": "an empty window, one over 7 days, or a time out of range" }, "404": { "description": "the mission file has no orbit" } } } },
            "/api/track": { "get": {
                "summary": "the predicted ground track (default: half an orbit before the spacecraft's latest housekeeping time to one after)",
                "parameters": window("track time").as_array().into_iter().flatten().cloned()
                    .chain([json!({ "name": "step_ms", "in": "query", "schema": { "type": "integer", "default": 30000 } })])
                    .collect::<Vec<_>>(),
                "responses": { "200": { "description": "points: time, latitude, longitude" }, "400": { "description": "an empty window, one over 7 days, or a time out of range" }, "404": { "description": "the mission file has no orbit" } } } },
            "/api/sites": { "get": { "summary": "the ground stations of the mission file", "responses": { "200": { "description": "name, latitude, longitude" } } } },
            "/api/dictionary": { "get": { "summary": "the mission dictionary: every operator parameter (name, type, unit, range, default: a mission.toml key or a value), telecommand (arguments and their types, hazard), housekeeping channel (unit, warning and alarm ranges from the mission file) and event source (severities)", "responses": { "200": { "description": "{ mission, parameters, telecommands, channels, events }" }, "404": { "description": "the ground started without a mission file" } } } },
            "/api/commands": {
                "get": { "summary": "the audit trail of operator commands, newest first", "security": operator, "parameters": [ { "name": "limit", "in": "query", "schema": limit() } ], "responses": { "200": { "description": "entries" }, "400": { "description": "a limit over the maximum" }, "401": { "description": "no or wrong operator token" } } },
                "post": {
                    "summary": "send a telecommand through every connected station; recorded in the audit trail under the operator the token belongs to; a hazardous one is held for confirmation",
                    "security": operator,
                    "requestBody": { "content": { "application/json": { "example": { "command": { "SetMode": { "mode": "Safe" } } } } } },
                    "responses": { "202": { "description": "{ id, stations }: sent through that many stations; or { id, stations: 0, queued: true }: no station connected, it waits in the queue for the next one; or { id, stations: 0, awaiting_confirmation: true, confirm }: hazardous, held 10 minutes for POST confirm" }, "400": { "description": "a command the mission dictionary says the spacecraft would refuse (an unknown parameter, a value out of its range), named; nothing sent" }, "401": { "description": "no or wrong operator token" }, "413": { "description": "body over 64 KiB, or command over one frame" } } } },
            "/api/commands/queue": { "get": { "summary": "the commands waiting for a station (their audit entries), oldest first; each goes up when the next station signs on", "security": operator, "responses": { "200": { "description": "entries" }, "401": { "description": "no or wrong operator token" } } } },
            "/api/commands/awaiting": { "get": { "summary": "the hazardous commands and uploads held for confirmation by this process (their audit entries), oldest first", "security": operator, "responses": { "200": { "description": "entries" }, "401": { "description": "no or wrong operator token" } } } },
            "/api/commands/{id}/confirm": { "post": { "summary": "confirm a hazardous command (audited with the operator's name): it is released as any other, sent or queued", "security": operator, "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } } ], "responses": { "202": { "description": "{ id, stations } or { id, stations: 0, queued: true }" }, "401": { "description": "no or wrong operator token" }, "404": { "description": "not awaiting confirmation: never held, confirmed, cancelled or expired" }, "503": { "description": "a model upload with no station connected (uploads are not queued): not sent" } } } },
            "/api/commands/{id}": { "get": { "summary": "a command's stages with times: submitted, what the ground did (awaiting_confirmation, confirmed, queued, released with stations and ARSNs, cancelled, not_sent; ground ms), then the spacecraft's verification reports (spacecraft ms): accepted, refused, completed or failed, with the reason or detail; a time-tagged command's carry the time it was tagged with; timed_out when released and no report came within ground.command_timeout_contacts contacts", "security": operator, "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } } ], "responses": { "200": { "description": "{ id, operator, command, stages: [...] }" }, "401": { "description": "no or wrong operator token" }, "404": { "description": "no such command" } } },
                "delete": { "summary": "cancel a queued command, or one awaiting confirmation: it is never sent (audited)", "security": operator, "parameters": [ { "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } } ], "responses": { "200": { "description": "{ id, cancelled: true }" }, "401": { "description": "no or wrong operator token" }, "404": { "description": "neither queued nor awaiting confirmation: sent, cancelled, or never held" } } } },
            "/api/models/{name}": { "post": {
                "summary": "upload an ONNX file as the new weights of manifest model `name`: segments then an InstallModel command, under one audit id; the spacecraft verifies the hash and signature and keeps the running model until the new one loads",
                "security": operator,
                "parameters": [
                    { "name": "name", "in": "path", "required": true, "schema": { "type": "string" } },
                    { "name": "signature", "in": "query", "required": true, "schema": { "type": "string" }, "description": "hex ed25519 signature of the file's SHA-256 (as `flight-tools sign-model` writes it)" } ],
                "requestBody": { "content": { "application/octet-stream": {} } },
                "responses": { "202": { "description": "held for confirmation (installing a model is hazardous): { id, awaiting_confirmation: true, confirm }" }, "400": { "description": "bad name or signature, or an empty file" }, "401": { "description": "no or wrong operator token" }, "413": { "description": "file over 8 MiB" } } } },
            "/api/openapi.json": { "get": { "summary": "this document", "responses": { "200": { "description": "OpenAPI 3.1" } } } },
            "/metrics": { "get": { "summary": "Prometheus metrics", "responses": { "200": { "description": "text exposition format" } } } }
        }
    })
}
