//! Server configuration. The binary fills it from a TOML file, `KONBINI_*` environment
//! variables and flags; tests build it directly.

use konbini_core::Currency;

/// Wallet and top-up limits, in minor units of the platform currency.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest single top-up.
    pub per_topup_minor: i64,
    /// Most that may be topped up in one day (UTC+9 day, the chain's business day).
    pub daily_topup_minor: i64,
    /// Largest wallet balance.
    pub max_balance_minor: i64,
    /// Payments at or above this amount wait for the customer's confirmation in the wallet
    /// (`pending_confirmation`); the risk engine will decide this per payment later.
    pub confirm_at_or_above_minor: i64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            per_topup_minor: 30_000,
            daily_topup_minor: 50_000,
            max_balance_minor: 100_000,
            confirm_at_or_above_minor: 50_000,
        }
    }
}

/// Where card operations go.
#[derive(Debug, Clone)]
pub enum ProcessorConfig {
    /// The built-in simulator, in process. `slow_ms` is the stall of the slow test card.
    Simulator { slow_ms: u64 },
    /// A processor (or `konbini processor-sim`) over HTTP.
    Http { url: String, timeout_ms: u64 },
}

/// Everything the HTTP service needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL for links in messages; never taken from the request's Host header.
    pub public_url: String,
    /// The platform currency (wallets and limits are kept in it).
    pub currency: Currency,
    pub limits: Limits,
    /// Session lifetime without activity.
    pub session_idle_ms: i64,
    /// Session lifetime, whatever the activity.
    pub session_absolute_ms: i64,
    /// How long a payment waits for the customer's confirmation.
    pub confirmation_timeout_ms: i64,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// A card operation (top-up, card-funded payment) still unfinished after this long was cut
    /// off by a crash or a lost answer; the reconciler asks the processor and finishes it.
    /// Far above the longest live call (two authorize attempts and a capture, each bounded by
    /// the processor timeout).
    pub card_op_stuck_after_ms: i64,
    /// How often the reconciler looks for such operations.
    pub reconcile_interval_ms: u64,
    /// Window over which failed payment codes are counted.
    pub code_failure_window_ms: i64,
    /// Failed codes a terminal may submit per window before its payments get 429.
    pub max_code_failures_per_terminal: i64,
    /// Failed codes for one slot at one terminal per window before that terminal stops
    /// checking codes of that slot (other terminals are unaffected, so nobody can lock a
    /// customer out of paying everywhere).
    pub max_code_failures_per_slot: i64,
    pub processor: ProcessorConfig,
    /// Outgoing mail relay, `smtp://host:port` (plain SMTP to a local relay; `None`: email
    /// events stay in the outbox until a relay is configured).
    pub smtp_url: Option<String>,
    /// The From address of customer email.
    pub mail_from: String,
    /// The SMS gateway: a JSON `POST {"to", "body"}` to this URL (`None`: SMS events wait).
    pub sms_url: Option<String>,
    /// Failed logins are counted over this window.
    pub login_window_ms: i64,
    /// Failed logins per account (from devices not bound to it) per window before 429.
    pub login_failures_per_account: i64,
    /// Consecutive failed logins after which only account recovery opens the account (a
    /// device already bound to the account still logs in: nobody can lock a customer out).
    pub login_lockout_after: i64,
    /// Failed logins per client IP, and per network (/24, IPv6 /48), per window before 429.
    pub login_failures_per_ip: i64,
    pub login_failures_per_network: i64,
    /// Staff sessions end after this long without a request.
    pub staff_idle_ms: i64,
    /// Staff sessions end after this long whatever the activity.
    pub staff_absolute_ms: i64,
    /// How often the outbox dispatcher looks for due events.
    pub dispatch_interval_ms: u64,
    /// Delivery attempts before an event goes to the dead-letter list.
    pub max_delivery_attempts: i64,
    /// Life of a code sent by email or SMS (sign-up, log-in, step-up, contact change).
    pub code_ttl_ms: i64,
    /// Life of a recovery request and its link and code (at most 15 minutes).
    pub recovery_ttl_ms: i64,
    /// Wrong answers a flow (and each code) takes before it dies.
    pub max_code_attempts: i64,
    /// Codes one flow may send (the first and the resends).
    pub max_code_sends: i64,
    /// How recent the last authentication must be for sensitive actions (step-up).
    pub step_up_window_ms: i64,
    /// Top-ups above this need a recent authentication.
    pub step_up_topup_above_minor: i64,
    /// After an account recovery: how long the recovery hold lasts, and the largest payment
    /// allowed during it from a device not bound with a strong factor.
    pub recovery_hold_ms: i64,
    pub recovery_hold_payment_limit_minor: i64,
    /// How long the link that reverts a contact change stays valid.
    pub contact_revert_ttl_ms: i64,
    /// Sign-ups and recovery requests per client IP and per network in `request_window_ms`.
    pub request_window_ms: i64,
    pub signups_per_ip: i64,
    pub signups_per_network: i64,
    pub recoveries_per_ip: i64,
    pub recoveries_per_network: i64,
    /// Recovery requests per account per hour (more are answered alike but send nothing).
    pub recoveries_per_account_per_hour: i64,
    /// Log-ins waiting for a second factor per account per `login_window_ms` (each sends an SMS).
    pub challenges_per_account: i64,
    /// Top-up and payment limits per customer tier (new, verified, established).
    /// Only `konbini bench --without-risk` turns this off, to measure what the risk engine
    /// costs an immediate wallet payment: a POS payment as it was before the engine, whose
    /// context query reads none of the engine's columns and which builds no features,
    /// checks no tier limit, evaluates no rule and journals and counts nothing.
    /// Nothing else sets it; a deployment always runs with the engine.
    pub risk_in_line: bool,
    pub tier_limits: konbini_core::risk::TierLimits,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            public_url: "http://localhost:8080".into(),
            currency: Currency::JPY,
            limits: Limits::default(),
            session_idle_ms: 30 * 60 * 1000,
            session_absolute_ms: 12 * 60 * 60 * 1000,
            confirmation_timeout_ms: 60_000,
            max_body_bytes: 16 * 1024,
            card_op_stuck_after_ms: 120_000,
            reconcile_interval_ms: 10_000,
            code_failure_window_ms: 10 * 60 * 1000,
            max_code_failures_per_terminal: 20,
            max_code_failures_per_slot: 3,
            processor: ProcessorConfig::Simulator { slow_ms: 3_000 },
            smtp_url: None,
            mail_from: "Konbini <no-reply@konbini.invalid>".into(),
            sms_url: None,
            dispatch_interval_ms: 500,
            login_window_ms: 15 * 60 * 1000,
            login_failures_per_account: 5,
            login_lockout_after: 100,
            login_failures_per_ip: 20,
            login_failures_per_network: 100,
            staff_idle_ms: 15 * 60 * 1000,
            staff_absolute_ms: 8 * 60 * 60 * 1000,
            max_delivery_attempts: 8,
            code_ttl_ms: 10 * 60 * 1000,
            recovery_ttl_ms: 15 * 60 * 1000,
            max_code_attempts: 5,
            max_code_sends: 3,
            step_up_window_ms: 5 * 60 * 1000,
            step_up_topup_above_minor: 10_000,
            recovery_hold_ms: 72 * 60 * 60 * 1000,
            recovery_hold_payment_limit_minor: 3_000,
            contact_revert_ttl_ms: 7 * 24 * 60 * 60 * 1000,
            request_window_ms: 60 * 60 * 1000,
            signups_per_ip: 10,
            signups_per_network: 50,
            recoveries_per_ip: 10,
            recoveries_per_network: 50,
            recoveries_per_account_per_hour: 3,
            challenges_per_account: 5,
            tier_limits: konbini_core::risk::TierLimits::default(),
            risk_in_line: true,
        }
    }
}
