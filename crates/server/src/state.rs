//! The state every handler and use case shares.

use crate::clock::Clock;
use crate::config::{Config, ProcessorConfig};
use crate::processor::{HttpProcessor, Processor, Simulator};
use crate::secrets::MasterSecret;
use konbini_store::Db;
use std::sync::Arc;

/// Shared, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    pub secret: Arc<MasterSecret>,
    pub processor: Processor,
    /// A real Argon2id hash of a random password, verified against when the account does not
    /// exist so that login takes the same time either way.
    pub dummy_password_hash: Arc<String>,
    /// Request counters and latencies for `/metrics`.
    pub metrics: Arc<crate::telemetry::Metrics>,
    /// The WebAuthn relying party (passkeys); `None` when the public URL is not a domain.
    pub webauthn: Option<Arc<webauthn_rs::Webauthn>>,
    /// The risk engine's compiled rule set (`app::risk`).
    pub risk: Arc<crate::app::risk::Engine>,
    /// Wakes the outbox dispatcher (codes should leave at once, not at the next sweep).
    pub outbox_wake: Arc<tokio::sync::Notify>,
}

impl AppState {
    pub fn new(
        db: Db,
        config: Config,
        clock: Arc<dyn Clock>,
        secret: MasterSecret,
    ) -> Result<AppState, String> {
        let processor = match &config.processor {
            ProcessorConfig::Simulator { slow_ms } => {
                Processor::Simulator(Simulator::new(*slow_ms))
            }
            ProcessorConfig::Http { url, timeout_ms } => {
                Processor::Http(HttpProcessor::new(url, *timeout_ms).map_err(|e| e.to_string())?)
            }
        };
        let dummy = crate::app::accounts::hash_password(&konbini_core::encoding::hex(
            &crate::secrets::random_bytes::<16>(),
        ))
        .map_err(|e| e.message)?;
        Ok(AppState {
            webauthn: crate::app::passkeys::relying_party(&config.public_url).map(Arc::new),
            db,
            config: Arc::new(config),
            clock,
            secret: Arc::new(secret),
            processor,
            dummy_password_hash: Arc::new(dummy),
            metrics: Arc::default(),
            risk: Arc::default(),
            outbox_wake: Arc::default(),
        })
    }

    /// Tells the dispatcher that events were just committed.
    pub fn wake_dispatcher(&self) {
        self.outbox_wake.notify_one();
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}
