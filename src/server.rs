//! The process-level HTTP routes every target serves, and the servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// The Tempo version we report in `/api/status/buildinfo`. Grafana's Tempo
/// data source enables features by this version (streaming search from
/// 2.2.0, metrics streaming from 2.7.0), so it names the Tempo API level
/// Strata implements; Strata's own version is reported beside it.
pub(crate) const TEMPO_COMPATIBLE_VERSION: &str = "2.7.0";

/// Shared state of the process routes.
#[derive(Debug)]
pub(crate) struct ProcessState {
    pub(crate) metrics: PrometheusHandle,
    /// False before start-up completes and once shutdown begins.
    pub(crate) ready: AtomicBool,
}

/// `/ready`, `/metrics`, `/api/echo`, `/api/status/buildinfo`.
pub(crate) fn process_routes(state: Arc<ProcessState>) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/api/echo", get(|| async { "echo" }))
        .route("/api/status/buildinfo", get(buildinfo))
        .with_state(state)
}

async fn ready(State(state): State<Arc<ProcessState>>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(state): State<Arc<ProcessState>>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

async fn buildinfo() -> impl IntoResponse {
    Json(serde_json::json!({
        "version": TEMPO_COMPATIBLE_VERSION,
        "revision": concat!("strata-", env!("CARGO_PKG_VERSION")),
        "branch": "strata",
        "buildUser": "strata",
        "buildDate": "",
        "goVersion": "",
        "strataVersion": env!("CARGO_PKG_VERSION"),
    }))
}

/// Binds a listener, with the address in the error.
pub(crate) async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { what, addr, source })
}

/// Serves `router` until `cancel` fires, then finishes in-flight requests.
pub(crate) async fn serve_http(
    what: &'static str,
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
) -> Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(cancel.cancelled_owned())
        .await
        .map_err(|e| Error::Serve {
            what,
            message: e.to_string(),
        })
}
