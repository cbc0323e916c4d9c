-- Konbini schema, version 1. Written once for both backends: integers are BIGINT (money in
-- minor units, time in unix milliseconds, flags 0/1), text is TEXT, bytes are BYTEA (BLOB on
-- SQLite). No floats, no native timestamps.

CREATE TABLE customers (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE,   -- normalized: trimmed, lower-case
    phone           TEXT NOT NULL,
    password_hash   TEXT NOT NULL,          -- Argon2id PHC string
    status          TEXT NOT NULL,          -- active | frozen | closed
    funding         TEXT NOT NULL,          -- wallet | card: how POS payments are funded
    funding_card_id TEXT,
    created_ms      BIGINT NOT NULL,
    -- When each contact point was proven (a code delivered to it came back); NULL: unverified.
    -- Messages go only to verified contact points, except the code that verifies one.
    email_verified_ms BIGINT,
    phone_verified_ms BIGINT,
    -- TOTP: the secret is derived from the master secret, the id and this generation, never
    -- stored. totp_enabled_ms NULL: not enrolled (a pending enrolment may exist).
    totp_generation BIGINT NOT NULL DEFAULT 0,
    totp_enabled_ms BIGINT,
    totp_last_step  BIGINT NOT NULL DEFAULT 0, -- highest time step accepted (no replay)
    -- Until then (after an account recovery) money moves only with a strong second factor.
    recovery_hold_until_ms BIGINT NOT NULL DEFAULT 0,
    password_changed_ms BIGINT,
    contact_changed_ms  BIGINT               -- last change of the email or phone (risk: since.contact_change)
);
CREATE INDEX customers_phone ON customers(phone);

CREATE TABLE devices (
    id                TEXT PRIMARY KEY,
    customer_id       TEXT NOT NULL REFERENCES customers(id),
    slot              BIGINT NOT NULL,      -- opaque payment-code slot, see docs/payment-codes.md
    key_generation    BIGINT NOT NULL,
    secret_hash       BYTEA NOT NULL,       -- SHA-256 of the device secret
    name              TEXT NOT NULL,
    status            TEXT NOT NULL,        -- bound | revoked
    last_code_counter BIGINT NOT NULL,      -- highest payment-code counter used (one-time codes)
    created_ms        BIGINT NOT NULL,
    revoked_ms        BIGINT,
    -- The proof that bound it: signup | sms | totp | recovery_code. TOTP and recovery codes
    -- are strong factors (they lift the recovery hold's limits); an SMS code is not.
    bound_by          TEXT NOT NULL DEFAULT 'sms',
    -- Keyed fingerprint of the app installation that bound it (the risk engine counts the
    -- distinct accounts bound on one phone: device.accounts); NULL when the app sent none.
    installation      BYTEA,
    -- Distinct accounts with a device bound from that installation, this one's included
    -- (device.accounts), kept on every device of the installation as each binds
    -- (customers::set_installation), so that a payment reads it with its device instead of
    -- counting; NULL when the app sent no installation.
    installation_accounts BIGINT,
    -- The device's payment velocity ("dev:<id>:pay" lives here: a payment updates this row
    -- anyway, to spend its code): the four windows of a risk_velocity row, packed in one
    -- value (konbini_store::risk::Windows::packed; written empty when the device is bound,
    -- so that its first counted payment grows the row by a few bytes, not by the whole
    -- value: on PostgreSQL a row that outgrows its page is updated with a new entry in
    -- each of its five indexes; NULL reads as empty too). One column read and written per
    -- payment instead of twenty.
    windows           BYTEA
);
CREATE UNIQUE INDEX devices_live_slot ON devices(slot) WHERE status <> 'revoked';
-- The till's lookup (slot = ? AND status = 'bound') cannot use the partial index on SQLite.
CREATE INDEX devices_slot ON devices(slot);
CREATE INDEX devices_customer ON devices(customer_id);
CREATE INDEX devices_installation ON devices(installation);

CREATE TABLE sessions (
    token_hash   BYTEA PRIMARY KEY,         -- SHA-256 of the bearer token; the token is never stored
    customer_id  TEXT NOT NULL REFERENCES customers(id),
    device_id    TEXT NOT NULL REFERENCES devices(id),
    created_ms   BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    expires_ms   BIGINT NOT NULL,
    revoked_ms   BIGINT,
    -- Last time the customer proved who they are (log-in or re-authentication): sensitive
    -- actions need this to be recent (step-up).
    authenticated_ms BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX sessions_customer ON sessions(customer_id);

-- Multi-step identity flows: sign-up verification, a log-in waiting for its second factor,
-- an account recovery, a contact change. The client holds a random handle; only its SHA-256
-- is stored. `data` is JSON the flow needs (device name, the new or old contact point).
CREATE TABLE auth_flows (
    handle_hash BYTEA PRIMARY KEY,
    kind        TEXT NOT NULL,      -- signup | login | recovery | contact_change
    customer_id TEXT NOT NULL REFERENCES customers(id),
    data        TEXT NOT NULL,
    attempts    BIGINT NOT NULL,    -- failed proofs; the flow dies at the limit
    expires_ms  BIGINT NOT NULL,
    done_ms     BIGINT,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX auth_flows_customer ON auth_flows(customer_id);

-- One-time codes and link tokens sent by email or SMS. The code is an HMAC of the row id
-- under a key derived from the master secret, so the outbox carries only the id and the
-- database only the code's SHA-256; single use, short-lived, attempt-limited.
CREATE TABLE verifications (
    id          TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    flow        BYTEA NOT NULL,     -- auth_flows.handle_hash, or a session's token hash (step-up)
    purpose     TEXT NOT NULL,      -- email | phone | login_sms | step_up_sms | recovery_email | recovery_sms | contact_new | contact_revert
    code_hash   BYTEA NOT NULL,
    attempts    BIGINT NOT NULL,
    expires_ms  BIGINT NOT NULL,
    used_ms     BIGINT,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX verifications_flow ON verifications(flow);
CREATE INDEX verifications_customer ON verifications(customer_id, purpose);

-- Passkeys (WebAuthn credentials): the public key and counter as webauthn-rs serializes
-- them. Nothing here is secret; the private key never leaves the customer's authenticator.
CREATE TABLE passkeys (
    id            TEXT PRIMARY KEY,
    customer_id   TEXT NOT NULL REFERENCES customers(id),
    credential_id BYTEA NOT NULL UNIQUE,
    passkey       TEXT NOT NULL,
    name          TEXT NOT NULL,
    created_ms    BIGINT NOT NULL,
    last_used_ms  BIGINT
);
CREATE INDEX passkeys_customer ON passkeys(customer_id);

-- One-time recovery codes (10 per issue, 80 bits each), stored as SHA-256.
CREATE TABLE recovery_codes (
    customer_id TEXT NOT NULL REFERENCES customers(id),
    code_hash   BYTEA NOT NULL,
    used_ms     BIGINT,
    created_ms  BIGINT NOT NULL,
    PRIMARY KEY (customer_id, code_hash)
);

CREATE TABLE cards (
    id              TEXT PRIMARY KEY,
    customer_id     TEXT NOT NULL REFERENCES customers(id),
    processor_token TEXT NOT NULL,
    brand           TEXT NOT NULL,
    last4           TEXT NOT NULL,
    exp_month       BIGINT NOT NULL,
    exp_year        BIGINT NOT NULL,
    fingerprint     BYTEA NOT NULL,         -- keyed HMAC of the card number; the number is never stored
    status          TEXT NOT NULL,          -- active | removed
    created_ms      BIGINT NOT NULL
);
CREATE INDEX cards_customer ON cards(customer_id);
CREATE INDEX cards_fingerprint ON cards(fingerprint);

CREATE TABLE stores (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    region     TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    -- Where the store is, in millionths of a degree (the risk engine's travel features);
    -- NULL when unknown.
    lat_e6     BIGINT,
    lon_e6     BIGINT
);

CREATE TABLE terminals (
    id         TEXT PRIMARY KEY,
    store_id   TEXT NOT NULL REFERENCES stores(id),
    key_hash   BYTEA NOT NULL UNIQUE,       -- SHA-256 of the terminal key
    label      TEXT NOT NULL,
    status     TEXT NOT NULL,               -- active | revoked
    created_ms BIGINT NOT NULL,
    -- Its store's coordinates, copied when the terminal is made (stores do not move), so a
    -- payment's context reads them without joining stores. Whatever moves a store must
    -- copy its new coordinates here too.
    store_lat_e6 BIGINT,
    store_lon_e6 BIGINT
);

-- Ledger. balance = sum of postings (credits positive); held = sum of pending holds.
CREATE TABLE accounts (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    currency   TEXT NOT NULL,
    balance    BIGINT NOT NULL,
    held       BIGINT NOT NULL,
    created_ms BIGINT NOT NULL,
    -- A wallet carries its customer's risk profile (konbini_store::risk): every wallet
    -- payment writes this row anyway (its debit), so the profile is counted by that same
    -- row write, not by one of its own (measured as half of what the risk engine cost a
    -- payment on PostgreSQL). The customer's payments so far, also what PostgreSQL's
    -- single-statement payment checks to know the profile is as it read it; and the rest,
    -- packed in one value (konbini_store::risk::pack_profile; NULL before the first
    -- payment): the total and largest payment; the last store, its coordinates and the
    -- time paid there; the payments in the current business day and calendar month (JST)
    -- for the tier limits; and the customer's payment velocity ("cus:<id>:pay"), packed like
    -- the device's (devices.windows). Other accounts leave them 0 and NULL.
    risk_payments BIGINT NOT NULL DEFAULT 0,
    risk_state    BYTEA
);

CREATE TABLE entries (
    id         TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,               -- topup | payment | refund | reversal | ...
    ref_id     TEXT NOT NULL,               -- the topup / payment / refund it records
    currency   TEXT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX entries_ref ON entries(ref_id);

CREATE TABLE postings (
    entry_id   TEXT NOT NULL REFERENCES entries(id),
    account_id TEXT NOT NULL REFERENCES accounts(id),
    amount     BIGINT NOT NULL,             -- signed: credit positive, debit negative
    PRIMARY KEY (entry_id, account_id)
);
-- No index on postings(account_id): every payment would pay for it, and `ledger verify`
-- aggregates with a full scan anyway. Add one with the first per-account statement query.

CREATE TABLE holds (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id),
    amount     BIGINT NOT NULL,
    currency   TEXT NOT NULL,
    state      TEXT NOT NULL,               -- pending | posted | voided
    ref_id     TEXT NOT NULL,
    expires_ms BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE INDEX holds_pending ON holds(state, expires_ms);

CREATE TABLE topups (
    id               TEXT PRIMARY KEY,
    customer_id      TEXT NOT NULL REFERENCES customers(id),
    source           TEXT NOT NULL,         -- card | cash
    card_id          TEXT,
    store_id         TEXT,
    amount           BIGINT NOT NULL,
    currency         TEXT NOT NULL,
    status           TEXT NOT NULL,         -- pending | succeeded | failed
    decline_code     TEXT,
    processor_auth   TEXT,
    entry_id         TEXT,
    created_ms       BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL
);
CREATE INDEX topups_customer ON topups(customer_id, created_ms);

CREATE TABLE payments (
    id             TEXT PRIMARY KEY,
    customer_id    TEXT,                    -- NULL when the code matched no device
    device_id      TEXT,
    store_id       TEXT NOT NULL,
    terminal_id    TEXT NOT NULL,
    amount         BIGINT NOT NULL,
    currency       TEXT NOT NULL,
    status         TEXT NOT NULL,           -- succeeded | declined | pending_confirmation | canceled | expired
    decline_code   TEXT,
    funding        TEXT,                    -- wallet | card
    card_id        TEXT,
    processor_auth TEXT,
    order_ref      TEXT NOT NULL,
    basket         TEXT NOT NULL,           -- JSON array of basket lines
    refunded       BIGINT NOT NULL,
    hold_id        TEXT,
    expires_ms     BIGINT,
    created_ms     BIGINT NOT NULL,
    updated_ms     BIGINT NOT NULL,
    -- The risk engine's journal line of a payment it simply allowed (no rule fired, live or
    -- shadow): the features it saw, packed (konbini_core::risk::Features::journal_bytes; read
    -- back as risk_decisions.features' text). Most payments are such, so their decisions
    -- live on the payment row instead of a row of their own in risk_decisions
    -- (konbini_store::risk::decisions_page). NULL: journaled there, or the engine did not
    -- decide.
    risk_features  BYTEA
);
CREATE INDEX payments_customer ON payments(customer_id, created_ms);
CREATE INDEX payments_store ON payments(store_id, created_ms);
-- Payments by time: the settlement report reads a period's payments (konbini_store::ledger::
-- settlement), and the risk journal's payments (those with risk_features) are paged through
-- by time with it, beside risk_decisions_at (konbini_store::risk::decisions_page).
CREATE INDEX payments_time ON payments(created_ms);

CREATE TABLE refunds (
    id         TEXT PRIMARY KEY,
    payment_id TEXT NOT NULL REFERENCES payments(id),
    amount     BIGINT NOT NULL,
    currency   TEXT NOT NULL,
    status     TEXT NOT NULL,               -- succeeded
    created_ms BIGINT NOT NULL
);
CREATE INDEX refunds_payment ON refunds(payment_id);

-- The customer's feed (GET /v1/transactions): one row per top-up, payment and refund.
CREATE TABLE activity (
    id          TEXT PRIMARY KEY,           -- the topup / payment / refund id
    customer_id TEXT NOT NULL,
    kind        TEXT NOT NULL,              -- topup | payment | refund
    amount      BIGINT NOT NULL,            -- signed effect on the wallet view
    currency    TEXT NOT NULL,
    status      TEXT NOT NULL,
    description TEXT NOT NULL,
    created_ms  BIGINT NOT NULL
);
CREATE INDEX activity_customer ON activity(customer_id, created_ms, id);

-- Stored responses of requests with an Idempotency-Key (Stripe semantics).
CREATE TABLE idempotency (
    scope        TEXT NOT NULL,             -- who sent it: a customer or terminal id
    key          TEXT NOT NULL,
    request_hash BYTEA NOT NULL,
    status_code  BIGINT,                    -- NULL while the first request is in flight
    body         TEXT,
    created_ms   BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
-- Keys are purged by age in a daily batch (a scan); no index taxes every request for it.

-- Transactional outbox: written in the same transaction as the change it reports.
CREATE TABLE outbox (
    id           TEXT PRIMARY KEY,
    topic        TEXT NOT NULL,
    aggregate_id TEXT NOT NULL,
    payload      TEXT NOT NULL,             -- JSON
    created_ms   BIGINT NOT NULL,
    delivered_ms BIGINT,
    attempts     BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL DEFAULT 0,  -- retry backoff
    lease_until_ms  BIGINT NOT NULL DEFAULT 0,  -- a dispatcher's claim (one node delivers)
    dead_ms      BIGINT,                        -- gave up: the dead-letter list
    last_error   TEXT
);
CREATE INDEX outbox_pending ON outbox(delivered_ms, created_ms);

-- Card operations between their two transactions (the processor call in between). A row is
-- written with the first transaction and removed by the second; a row left behind by a crash
-- or a lost answer is finished by the reconciler, which asks the processor what happened.
-- Card refunds are recorded in the ledger first and leave a row until the processor confirms.
CREATE TABLE card_ops (
    ref_id     TEXT PRIMARY KEY,            -- the top-up or payment id (the processor's reference)
    kind       TEXT NOT NULL,               -- topup | payment
    idem_scope TEXT NOT NULL,               -- the idempotency record to complete
    idem_key   TEXT NOT NULL,
    processor_auth TEXT,                    -- refunds: the authorization to refund
    amount     BIGINT,                      -- refunds: how much
    created_ms BIGINT NOT NULL
);
CREATE INDEX card_ops_created ON card_ops(created_ms);

-- Failed payment codes per subject ("term:<terminal>" and "slot:<slot>:<terminal>") in a fixed
-- window, to throttle guessing. In the database so that every node sees the same counts.
CREATE TABLE code_failures (
    subject         TEXT PRIMARY KEY,
    window_start_ms BIGINT NOT NULL,
    failures        BIGINT NOT NULL
);

-- Tamper-evident audit log of security events and staff actions: each row's hash covers the
-- previous row's hash and its own fields (konbini_core::audit), so `konbini audit verify`
-- detects an edited, deleted or reordered row. Append-only like the ledger.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at_ms      BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    details    TEXT NOT NULL,
    prev_hash  BYTEA NOT NULL,
    hash       BYTEA NOT NULL
);

-- Operator staff. Second factor mandatory: the TOTP secret is derived from the master secret,
-- the staff id and `totp_generation` (nothing secret stored); `totp_last_step` blocks replay.
CREATE TABLE staff (
    id              TEXT PRIMARY KEY,
    email           TEXT NOT NULL UNIQUE,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL,          -- support | analyst | security | finance | admin
    password_hash   TEXT NOT NULL,
    totp_generation BIGINT NOT NULL,
    totp_last_step  BIGINT NOT NULL,
    status          TEXT NOT NULL,          -- active | disabled
    created_ms      BIGINT NOT NULL
);

CREATE TABLE staff_sessions (
    token_hash   BYTEA PRIMARY KEY,
    staff_id     TEXT NOT NULL REFERENCES staff(id),
    created_ms   BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL,
    expires_ms   BIGINT NOT NULL,
    revoked_ms   BIGINT
);

-- Risk engine. Velocity counters, one row per subject ("cus:<id>:pay", "dev:<id>:pay",
-- "store:<id>:pay", "term:<id>:pay", "cus:<id>:top", "card:<fingerprint>:top"). For each
-- window w (0: 10 min, 1: 1 h, 2: 24 h, 3: 7 d) the row keeps the current fixed bucket
-- (floor(at_ms / window)) with its count and sum, and the previous bucket's count and sum:
-- previous x unexpired fraction + current is the sliding estimate. An event updates one row
-- per subject and a decision reads one, whatever the traffic.
CREATE TABLE risk_velocity (
    subject TEXT PRIMARY KEY,
    w0_bucket BIGINT NOT NULL, w0_n BIGINT NOT NULL, w0_total BIGINT NOT NULL, w0_prev_n BIGINT NOT NULL, w0_prev_total BIGINT NOT NULL,
    w1_bucket BIGINT NOT NULL, w1_n BIGINT NOT NULL, w1_total BIGINT NOT NULL, w1_prev_n BIGINT NOT NULL, w1_prev_total BIGINT NOT NULL,
    w2_bucket BIGINT NOT NULL, w2_n BIGINT NOT NULL, w2_total BIGINT NOT NULL, w2_prev_n BIGINT NOT NULL, w2_prev_total BIGINT NOT NULL,
    w3_bucket BIGINT NOT NULL, w3_n BIGINT NOT NULL, w3_total BIGINT NOT NULL, w3_prev_n BIGINT NOT NULL, w3_prev_total BIGINT NOT NULL
);


-- Every decision, with the features it saw and the rules that fired (explainable, and the
-- input of backtests), but for a payment simply allowed: that one is journaled on its payment
-- row (payments.risk_features), where the hot path writes no row and no index entry more
-- than the payment's own.
CREATE TABLE risk_decisions (
    id          TEXT PRIMARY KEY,
    at_ms       BIGINT NOT NULL,
    customer_id TEXT,
    event_kind  TEXT NOT NULL,        -- payment | topup | card_link | login | ...
    ref_id      TEXT,                 -- the payment, top-up, ... it decided
    outcome     TEXT NOT NULL,        -- allow | review | step_up | block
    decided_by  TEXT,
    fired       TEXT NOT NULL,        -- JSON array of live rules that fired
    shadow      TEXT NOT NULL,        -- JSON array of shadow rules that fired
    features    TEXT NOT NULL,        -- JSON object (konbini_core::risk::Features::to_json)
    case_id     TEXT
);
CREATE INDEX risk_decisions_at ON risk_decisions(at_ms);
CREATE INDEX risk_decisions_customer ON risk_decisions(customer_id, at_ms);

-- Cases: one open case per customer collects its review and block decisions.
CREATE TABLE risk_cases (
    id          TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    status      TEXT NOT NULL,        -- open | resolved
    resolution  TEXT,                 -- legitimate | fraud
    assigned_to TEXT,
    decisions   BIGINT NOT NULL,
    opened_ms   BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    note        TEXT
);
CREATE UNIQUE INDEX risk_cases_one_open ON risk_cases(customer_id) WHERE status = 'open';

-- The rule set analysts edit (konbini_core::risk::RuleSpec); every version is kept.
CREATE TABLE risk_rules (
    name        TEXT PRIMARY KEY,
    version     BIGINT NOT NULL,
    description TEXT NOT NULL,
    source      TEXT NOT NULL,
    priority    BIGINT NOT NULL,
    mode        TEXT NOT NULL,        -- live | shadow
    enabled     BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL
);
CREATE TABLE risk_rule_versions (
    name        TEXT NOT NULL,
    version     BIGINT NOT NULL,
    description TEXT NOT NULL,
    source      TEXT NOT NULL,
    priority    BIGINT NOT NULL,
    mode        TEXT NOT NULL,
    enabled     BIGINT NOT NULL,
    updated_ms  BIGINT NOT NULL,
    updated_by  TEXT NOT NULL,
    PRIMARY KEY (name, version)
);
