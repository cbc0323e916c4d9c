//! The Konbini HTTP service: customer, POS and admin APIs over one database.
//!
//! `http` parses and authenticates; `app` holds the use cases; `konbini-store` persists;
//! `konbini-core` decides. See docs/architecture.md.
#![forbid(unsafe_code)]

pub mod app;
pub mod clock;
pub mod config;
pub mod devsinks;
pub mod error;
pub mod extract;
pub mod http;
pub mod notify;
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
    let dispatcher_state = state.clone();
    let dispatcher = tokio::spawn(async move {
        let channels = match notify::Channels::from_config(&dispatcher_state.config) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "outbox dispatcher not started");
                return;
            }
        };
        if !channels.any() {
            tracing::info!("no SMTP relay or SMS gateway configured: events stay in the outbox");
            return;
        }
        let every = Duration::from_millis(dispatcher_state.config.dispatch_interval_ms.max(10));
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = dispatcher_state.outbox_wake.notified() => {}
            }
            if let Err(e) = notify::dispatch_once(&dispatcher_state, &channels).await {
                tracing::warn!(error = %e, "outbox dispatch failed");
            }
        }
    });
    // The rule set is loaded (and the defaults seeded) before the first request.
    if let Err(e) = app::risk::refresh(&state).await {
        tracing::error!(error = %e, "risk rules not loaded");
    }
    // Other nodes' rule changes arrive within a few seconds; old counter buckets go.
    let risk = tokio::spawn(app::risk::keep_fresh(state.clone(), Duration::from_secs(3)));
    let purge_state = state.clone();
    let purge = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tick.tick().await;
            app::risk::purge(&purge_state.db, purge_state.now_ms()).await;
        }
    });
    // The store and terminal counters of the hot path, written behind (app::risk::SharedCounts).
    let stop_shared = std::sync::Arc::new(tokio::sync::Notify::new());
    let shared = tokio::spawn(app::risk::keep_writing_shared_counts(
        state.clone(),
        Duration::from_secs(1),
        stop_shared.clone(),
    ));
    let app = http::router(state);

    let r = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    sweeper.abort();
    reconciler.abort();
    dispatcher.abort();
    risk.abort();
    purge.abort();
    // What was counted since the last write goes in before the process ends.
    stop_shared.notify_one();
    let _ = shared.await;
    r
}
