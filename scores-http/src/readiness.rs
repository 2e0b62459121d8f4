//! `GET /readyz`: whether this instance should get traffic, and why not.
//!
//! 200 while it answers from a state its log really held, with what an operator wants to know
//! beside it: the sequence number, a replica's role and lag, why the log refuses appends or
//! cannot be reached, how long ago a replica last heard from its log, and where the log was
//! found damaged. Still 200 while the
//! log is away (every answer is right as of `seq`), unless the request says how stale it may be
//! (`?max_staleness=5s`), which lets a load balancer prefer replicas that hear their log. 503
//! `draining` once a shutdown has begun, while the rest of the API still answers.

use std::sync::atomic::Ordering;

use axum::extract::{RawQuery, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use scores_pipeline::Role;

use crate::error::{ApiError, JSON};
use crate::query;
use crate::state::AppState;

#[derive(serde::Serialize)]
struct Readiness {
    status: &'static str,
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lag: Option<u64>,
    /// Milliseconds since a replica of a shared log last heard from it.
    #[serde(rename = "stalenessMs", skip_serializing_if = "Option::is_none")]
    staleness_ms: Option<u128>,
    #[serde(skip_serializing_if = "Option::is_none")]
    journal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<String>,
    /// Where the log was found damaged: answers stay right, but those events cannot be read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    damage: Vec<String>,
    /// Events this replica, ingesting, let go from its standby window before it could store
    /// them: the log was away longer than the window holds.
    #[serde(rename = "droppedEvents", skip_serializing_if = "Option::is_none")]
    dropped_events: Option<u64>,
}

pub(crate) async fn readiness(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Response {
    let max_staleness = match query::max_staleness(query.as_deref()) {
        Ok(max) => max,
        Err(error) => return ApiError::from(error).into_response(),
    };
    let pipeline = state.pipeline();
    if let Some(reason) = pipeline.failure() {
        return ApiError::Failed(reason).into_response();
    }
    if state.is_draining() {
        return ApiError::Draining.into_response();
    }
    if !state.is_ready() {
        return state.not_ready().into_response();
    }
    let role = pipeline.role();
    let staleness = role.and(pipeline.staleness());
    if let Some(max) = max_staleness.filter(|_| role.is_some())
        && staleness.is_none_or(|staleness| staleness > max)
    {
        return ApiError::Stale { staleness, max }.into_response();
    }
    let problem = pipeline.log_refusal();
    let body = Readiness {
        status: "ready",
        seq: state.snapshot().seq(),
        role: role.map(Role::as_str),
        lag: pipeline.lag(),
        staleness_ms: staleness.map(|staleness| staleness.as_millis()),
        journal: problem
            .clone()
            .filter(|_| role.is_none())
            .map(|refusal| format!("refusing appends: {refusal}")),
        log: problem.filter(|_| role.is_some()),
        damage: pipeline.damage(),
        dropped_events: Some(pipeline.counters().standby_dropped.load(Ordering::Relaxed))
            .filter(|&dropped| dropped > 0),
    };
    ([(CONTENT_TYPE, JSON)], serde_json::to_vec(&body).unwrap_or_default()).into_response()
}
