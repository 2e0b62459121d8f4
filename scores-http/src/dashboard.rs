//! `GET /`: the dashboard, a page with a stylesheet and a script, embedded in the binary. No
//! build step and no CDN: what is in `src/dashboard/` is what the browser gets.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;

const PAGE: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/dashboard.js");
const STYLE: &str = include_str!("dashboard/dashboard.css");

/// Revalidated on every load, so a new binary's page is never mixed with an old script.
const NO_CACHE: (axum::http::HeaderName, &str) = (CACHE_CONTROL, "no-cache");

pub(crate) async fn page() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/html; charset=utf-8"), NO_CACHE], PAGE)
}

pub(crate) async fn script() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/javascript; charset=utf-8"), NO_CACHE], SCRIPT)
}

pub(crate) async fn style() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/css; charset=utf-8"), NO_CACHE], STYLE)
}
