//! The Konbini HTTP service: customer, POS and admin APIs over one database.
//!
//! `http` parses and authenticates; `app` holds the use cases; `konbini-store` persists;
//! `konbini-core` decides. See docs/architecture.md.
#![forbid(unsafe_code)]

pub mod app;
pub mod clock;
pub mod config;
pub mod error;
pub mod extract;
pub mod http;
pub mod processor;
pub mod render;
pub mod secrets;
pub mod state;
pub mod telemetry;

use std::time::Duration;

/// Serves the API on `listener` until `shutdown` resolves, with the background tasks: the
/// sweeper that expires unconfirmed payments and the reconciler of interrupted card operations.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: state::AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let sweeper_state = state.clone();
    let sweeper = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if let Err(e) = app::pos::expire_due(&sweeper_state).await {
                tracing::warn!(error = ?e.code, "hold expiry sweep failed");
            }
        }
    });
    let reconciler_state = state.clone();
    let reconciler = tokio::spawn(async move {
        let every = Duration::from_millis(reconciler_state.config.reconcile_interval_ms.max(10));
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = app::reconcile::run_once(&reconciler_state).await {
                tracing::warn!(error = ?e.code, "card-operation reconciliation failed");
            }
        }
    });
    let app = http::router(state);

    let r = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    sweeper.abort();
    reconciler.abort();
    r
}
