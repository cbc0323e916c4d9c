//! The admin API for risk: analysts read, write, enable, disable and backtest rules; security
//! staff and analysts work cases; security staff freeze and unfreeze customers.
//!
//! Every change is one transaction with its audit record (and, for a freeze, the message to
//! the customer through the outbox). A rule change is then loaded by this node at once
//! ([`crate::app::risk::refresh`]); the other nodes pick it up on their next refresh (3 s).
//!
//! Who may do what is [`Permission::roles`]; handlers call [`require`] before anything else,
//! so a wrong role learns nothing about the request (403 `forbidden_role`).

use crate::app::staff::StaffAuth;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use konbini_core::risk::{
    BacktestReport, DefinitionError, EventKind, Features, JournaledEvent, MAX_RULES, Mode, Outcome,
    Rule, RuleSet, RuleSpec,
};
use konbini_store::risk::{self as store, Case, DecisionRecord, RuleRecord};
use konbini_store::{Conn, Db, StoreError, audit, customers, identity};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Something a staff member may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// List and read rules and their versions.
    ReadRules,
    /// Create, edit, enable and disable rules.
    WriteRules,
    /// Backtest a candidate rule against the journal.
    Backtest,
    /// List and read cases with the decisions behind them.
    ReadCases,
    /// Assign and resolve cases (resolving as fraud freezes the customer).
    WorkCases,
    /// Freeze and unfreeze a customer.
    Freeze,
}

impl Permission {
    /// The roles that hold the permission (`finance` holds none of these).
    pub fn roles(self) -> &'static [&'static str] {
        match self {
            Permission::ReadRules | Permission::ReadCases => {
                &["support", "analyst", "security", "admin"]
            }
            Permission::WriteRules | Permission::Backtest => &["analyst", "admin"],
            Permission::WorkCases => &["analyst", "security", "admin"],
            Permission::Freeze => &["security", "admin"],
        }
    }

    /// Whether `role` holds the permission.
    pub fn allows(self, role: &str) -> bool {
        self.roles().contains(&role)
    }
}

/// The answer to a staff member whose role does not allow the action.
pub fn forbidden_role(role: &str, p: Permission) -> ApiError {
    ApiError::forbidden(
        "forbidden_role",
        format!(
            "The role `{role}` may not do this; it needs one of: {}.",
            p.roles().join(", ")
        ),
    )
}

/// Refuses the request unless the staff member's role holds `p`.
pub fn require(auth: &StaffAuth, p: Permission) -> ApiResult<()> {
    if p.allows(&auth.role) {
        Ok(())
    } else {
        Err(forbidden_role(&auth.role, p))
    }
}

// ------------------------------------------------------------------ rules

/// Most versions returned with a rule.
pub const MAX_VERSIONS_LISTED: i64 = 100;

/// A new rule (`POST /v1/admin/risk/rules`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    pub name: String,
    pub description: String,
    pub source: String,
    pub priority: i32,
    pub mode: Mode,
}

/// An edit of a rule (`PUT /v1/admin/risk/rules/{name}`): every field, and the version the
/// analyst edited (optimistic concurrency).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleEdit {
    pub description: String,
    pub source: String,
    pub priority: i32,
    pub mode: Mode,
    pub expected_version: i64,
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Live => "live",
        Mode::Shadow => "shadow",
    }
}

/// Checks a rule as the engine will compile it; errors name the field at fault and, for the
/// source, the line and column.
fn check(spec: RuleSpec) -> ApiResult<Rule> {
    Rule::new(spec).map_err(rule_error)
}

fn rule_error(e: DefinitionError) -> ApiError {
    match e {
        DefinitionError::BadName => ApiError::invalid_param("invalid_rule", "name", e.to_string()),
        DefinitionError::DescriptionTooLong => {
            ApiError::invalid_param("invalid_rule", "description", e.to_string())
        }
        DefinitionError::Source { error, .. } => ApiError::invalid_param(
            "invalid_rule",
            "source",
            format!("The rule does not check: {error}."),
        ),
        DefinitionError::DuplicateName(_) | DefinitionError::TooManyRules => {
            ApiError::invalid("invalid_rule", e.to_string())
        }
    }
}

fn rule_json(r: &RuleRecord) -> Value {
    json!({
        "name": r.name,
        "version": r.version,
        "description": r.description,
        "source": r.source,
        "priority": r.priority,
        "mode": r.mode,
        "enabled": r.enabled,
        "updated_ms": r.updated_ms,
        "updated_by": r.updated_by,
    })
}

/// Every stored rule, enabled or not, highest priority first.
pub async fn list_rules(state: &AppState) -> ApiResult<Value> {
    let rules = state.db.read(store::rules).await?;
    Ok(json!({"data": rules.iter().map(rule_json).collect::<Vec<_>>()}))
}

/// One rule and its versions, newest first.
pub async fn get_rule(state: &AppState, name: String) -> ApiResult<Value> {
    let (rule, versions) = state
        .db
        .read(move |c| {
            let Some(r) = store::rule_by_name(c, &name)? else {
                return Ok::<_, StoreError>(None);
            };
            let v = store::rule_versions(c, &name, MAX_VERSIONS_LISTED)?;
            Ok(Some((r, v)))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("rule"))?;
    let mut out = rule_json(&rule);
    out["versions"] = versions.iter().map(rule_json).collect();
    Ok(out)
}

/// Audit details of a rule change. The SHA-256 of the source makes the text of every
/// version tamper-evident: the versions table can be compared with the hash-chained log.
fn rule_details(r: &RuleRecord, changed: &[&str]) -> String {
    use sha2::Digest;
    let source_sha256 = konbini_core::encoding::hex(&sha2::Sha256::digest(r.source.as_bytes()));
    json!({
        "version": r.version,
        "mode": r.mode,
        "priority": r.priority,
        "enabled": r.enabled,
        "changed": changed,
        "source_sha256": source_sha256,
    })
    .to_string()
}

/// Loads the rule set now, so this node applies a change from its next decision. The change
/// is committed whatever happens here; a failure is logged and the periodic refresh retries.
async fn reload(state: &AppState) {
    if let Err(e) = crate::app::risk::refresh(state).await {
        tracing::warn!(error = %e, "risk rules reload after an admin change failed");
    }
}

/// Creates a rule (version 1, enabled).
pub async fn create_rule(state: &AppState, staff_id: &str, b: NewRule) -> ApiResult<Value> {
    check(RuleSpec {
        name: b.name.clone(),
        description: b.description.clone(),
        source: b.source.clone(),
        priority: b.priority,
        mode: b.mode,
        version: 1,
    })?;
    let record = RuleRecord {
        name: b.name,
        version: 1,
        description: b.description,
        source: b.source,
        priority: i64::from(b.priority),
        mode: mode_name(b.mode).into(),
        enabled: true,
        updated_ms: state.now_ms(),
        updated_by: staff_id.to_string(),
    };
    let staff = staff_id.to_string();
    let saved = record.clone();
    state
        .db
        .write(move |c| {
            let exists = || {
                ApiError::conflict(
                    "rule_exists",
                    "A rule with this name exists: edit it with PUT /v1/admin/risk/rules/{name}.",
                )
                .with_param("name")
            };
            if store::rule_by_name(c, &record.name)?.is_some() {
                return Err(exists());
            }
            if store::rule_count(c)? >= MAX_RULES as i64 {
                return Err(ApiError::conflict(
                    "too_many_rules",
                    format!("A rule set holds at most {MAX_RULES} rules."),
                ));
            }
            if !store::save_rule(c, &record)? {
                return Err(exists());
            }
            let details = rule_details(&record, &[]);
            audit::append(
                c,
                &staff,
                "risk.rule_created",
                &record.name,
                &details,
                record.updated_ms,
            )?;
            Ok(())
        })
        .await?;
    reload(state).await;
    Ok(rule_json(&saved))
}

/// Saves `next` as the version after `current` with its audit record; 409 when another edit
/// saved that version first.
fn save_next(c: &mut dyn Conn, next: &RuleRecord, action: &str, changed: &[&str]) -> ApiResult<()> {
    if !store::save_rule(c, next)? {
        return Err(version_conflict(next.version - 1));
    }
    let details = rule_details(next, changed);
    audit::append(
        c,
        &next.updated_by,
        action,
        &next.name,
        &details,
        next.updated_ms,
    )?;
    Ok(())
}

fn version_conflict(current: i64) -> ApiError {
    ApiError::conflict(
        "version_conflict",
        format!(
            "The rule was changed since you read it (it is at version {current} or later): read it again and redo the edit."
        ),
    )
    .with_param("expected_version")
}

/// Edits a rule: every field is replaced and the rule saved as its next version, provided it
/// is still at `expected_version`.
pub async fn edit_rule(
    state: &AppState,
    staff_id: &str,
    name: String,
    b: RuleEdit,
) -> ApiResult<Value> {
    check(RuleSpec {
        name: name.clone(),
        description: b.description.clone(),
        source: b.source.clone(),
        priority: b.priority,
        mode: b.mode,
        version: 1,
    })
    .map_err(|e| {
        // The name comes from the path: an impossible name is simply not there.
        if e.param.as_deref() == Some("name") {
            ApiError::not_found("rule")
        } else {
            e
        }
    })?;
    let (now, staff) = (state.now_ms(), staff_id.to_string());
    let saved = state
        .db
        .write(move |c| {
            let cur = store::rule_by_name(c, &name)?.ok_or_else(|| ApiError::not_found("rule"))?;
            if cur.version != b.expected_version {
                return Err(version_conflict(cur.version));
            }
            let next = RuleRecord {
                name: cur.name.clone(),
                version: cur.version + 1,
                description: b.description.clone(),
                source: b.source.clone(),
                priority: i64::from(b.priority),
                mode: mode_name(b.mode).into(),
                enabled: cur.enabled,
                updated_ms: now,
                updated_by: staff.clone(),
            };
            let changed: Vec<&str> = [
                ("description", cur.description != next.description),
                ("source", cur.source != next.source),
                ("priority", cur.priority != next.priority),
                ("mode", cur.mode != next.mode),
            ]
            .into_iter()
            .filter_map(|(f, differs)| differs.then_some(f))
            .collect();
            save_next(c, &next, "risk.rule_changed", &changed)?;
            Ok(next)
        })
        .await?;
    reload(state).await;
    Ok(rule_json(&saved))
}

/// Enables or disables a rule as a new version; a rule already in that state is left as it
/// is (no new version, no audit record).
pub async fn set_rule_enabled(
    state: &AppState,
    staff_id: &str,
    name: String,
    enabled: bool,
) -> ApiResult<Value> {
    let (now, staff) = (state.now_ms(), staff_id.to_string());
    let (saved, changed) = state
        .db
        .write(move |c| {
            let cur = store::rule_by_name(c, &name)?.ok_or_else(|| ApiError::not_found("rule"))?;
            if cur.enabled == enabled {
                return Ok((cur, false));
            }
            let next = RuleRecord {
                version: cur.version + 1,
                enabled,
                updated_ms: now,
                updated_by: staff.clone(),
                ..cur
            };
            if enabled {
                // Checked when saved; checked again in case the language changed since.
                if let Some(spec) = crate::app::risk::spec_of(&next) {
                    check(spec)?;
                }
            }
            let action = if enabled {
                "risk.rule_enabled"
            } else {
                "risk.rule_disabled"
            };
            save_next(c, &next, action, &["enabled"])?;
            Ok::<_, ApiError>((next, true))
        })
        .await?;
    if changed {
        reload(state).await;
    }
    Ok(rule_json(&saved))
}

// ------------------------------------------------------------------ backtest

/// Most journaled decisions one backtest reads; a longer window is cut (and says so).
pub const MAX_BACKTEST_EVENTS: u64 = 100_000;
/// Decisions read from the journal per query.
const BACKTEST_PAGE: i64 = 1_000;
/// One backtest at a time per process: each holds a database connection for the length of
/// its read (seconds for a full 100,000 decisions), which must not starve the payment path.
static BACKTESTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// The candidate of a backtest: a rule as analysts write it. Its mode does not matter (the
/// backtest replays it live), so it may be left out; so may the description.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateRule {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub source: String,
    pub priority: i32,
    #[serde(default)]
    pub mode: Option<Mode>,
}

/// `POST /v1/admin/risk/backtest`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    pub rule: CandidateRule,
    pub from_ms: i64,
    pub to_ms: i64,
}

/// What a backtest found: the report of [`konbini_core::risk::backtest`] and how much of the
/// journal it read.
#[derive(Debug, Clone, Serialize)]
pub struct BacktestRun {
    #[serde(flatten)]
    pub report: BacktestReport,
    /// The window replayed, `[from_ms, to_ms)`.
    pub from_ms: i64,
    pub to_ms: i64,
    /// The most journal entries one backtest reads ([`MAX_BACKTEST_EVENTS`]).
    pub max_events: u64,
    /// More decisions were journaled in the window than `max_events`: only the first ones
    /// (oldest first) were read. Narrow the window.
    pub truncated: bool,
    /// Journal entries that could not be read back (a feature or an event kind the current
    /// catalogue no longer has) and were not replayed.
    pub unreadable: u64,
}

/// Why a backtest could not run.
#[derive(Debug, thiserror::Error)]
pub enum BacktestError {
    #[error("{0}")]
    Rule(DefinitionError),
    #[error("the window is empty: from ({from_ms}) must be before to ({to_ms})")]
    Window { from_ms: i64, to_ms: i64 },
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl From<BacktestError> for ApiError {
    fn from(e: BacktestError) -> ApiError {
        match e {
            BacktestError::Rule(DefinitionError::Source { error, .. }) => ApiError::invalid_param(
                "invalid_rule",
                "rule.source",
                format!("The rule does not check: {error}."),
            ),
            BacktestError::Rule(e) => {
                let mut out = rule_error(e);
                out.param = out.param.map(|p| format!("rule.{p}"));
                out
            }
            BacktestError::Window { .. } => {
                ApiError::invalid_param("invalid_window", "to_ms", e.to_string())
            }
            BacktestError::Store(e) => e.into(),
        }
    }
}

/// A journaled decision as the backtest reads it; `None` when it cannot be read back with
/// the current catalogue.
pub fn journaled_event(d: &DecisionRecord) -> Option<JournaledEvent> {
    let event_kind = EventKind::parse(&d.event_kind)?;
    let recorded = Outcome::parse(&d.outcome)?;
    let json: Value = serde_json::from_str(&d.features).ok()?;
    let features = Features::from_json(&json).ok()?;
    Some(JournaledEvent {
        id: d.id.clone(),
        customer_id: d.customer_id.clone().unwrap_or_default(),
        at_ms: d.at_ms,
        event_kind,
        features,
        recorded,
        recorded_case: d.case_id.is_some(),
    })
}

/// The rule set the engine would compile from the stored rules (the enabled ones that
/// check), as [`crate::app::risk::refresh`] builds it.
fn stored_rule_set(c: &mut dyn Conn) -> Result<Result<RuleSet, DefinitionError>, StoreError> {
    let rules = store::rules(c)?
        .iter()
        .filter_map(crate::app::risk::spec_of)
        .filter_map(|spec| Rule::new(spec).ok())
        .collect();
    Ok(RuleSet::new(rules))
}

/// Replays the journal of `[from_ms, to_ms)` with `candidate` added to the current stored
/// rule set (replacing the rule of its name), reading at most [`MAX_BACKTEST_EVENTS`]
/// decisions in journal order, a page at a time, in one read transaction. Shared by the
/// admin API and `konbini risk backtest`; one runs at a time per process.
pub async fn run_backtest(
    db: &Db,
    candidate: CandidateRule,
    from_ms: i64,
    to_ms: i64,
) -> Result<BacktestRun, BacktestError> {
    if from_ms >= to_ms {
        return Err(BacktestError::Window { from_ms, to_ms });
    }
    let rule = Rule::new(RuleSpec {
        name: candidate.name,
        description: candidate.description,
        source: candidate.source,
        priority: candidate.priority,
        mode: Mode::Live,
        version: 0,
    })
    .map_err(BacktestError::Rule)?;
    let _turn = BACKTESTS
        .acquire()
        .await
        .map_err(|_| BacktestError::Store(StoreError::Closed))?;
    db.read(move |c| {
        let base = match stored_rule_set(c)? {
            Ok(set) => set,
            Err(e) => return Ok(Err(BacktestError::Rule(e))),
        };
        let mut after: Option<(i64, String)> = None;
        let mut page = Vec::new().into_iter();
        let (mut read, mut unreadable, mut exhausted) = (0u64, 0u64, false);
        let mut failure: Option<StoreError> = None;
        let events = std::iter::from_fn(|| {
            loop {
                if read >= MAX_BACKTEST_EVENTS {
                    return None;
                }
                if let Some(d) = page.next() {
                    read += 1;
                    match journaled_event(&d) {
                        Some(e) => return Some(e),
                        None => {
                            unreadable += 1;
                            continue;
                        }
                    }
                }
                if exhausted {
                    return None;
                }
                let cursor = after.as_ref().map(|(at, id)| (*at, id.as_str()));
                match store::decisions_page(c, from_ms, to_ms, cursor, BACKTEST_PAGE) {
                    Ok(rows) => {
                        exhausted = (rows.len() as i64) < BACKTEST_PAGE;
                        match rows.last() {
                            Some(last) => after = Some((last.at_ms, last.id.clone())),
                            None => return None,
                        }
                        page = rows.into_iter();
                    }
                    Err(e) => {
                        failure = Some(e);
                        return None;
                    }
                }
            }
        });
        let report = konbini_core::risk::backtest(&rule, &base, events);
        if let Some(e) = failure {
            return Err(e);
        }
        let report = match report {
            Ok(r) => r,
            Err(e) => return Ok(Err(BacktestError::Rule(e))),
        };
        let cursor = after.as_ref().map(|(at, id)| (*at, id.as_str()));
        let truncated = page.len() > 0
            || (read >= MAX_BACKTEST_EVENTS
                && !exhausted
                && !store::decisions_page(c, from_ms, to_ms, cursor, 1)?.is_empty());
        Ok(Ok(BacktestRun {
            report,
            from_ms,
            to_ms,
            max_events: MAX_BACKTEST_EVENTS,
            truncated,
            unreadable,
        }))
    })
    .await?
}

/// `POST /v1/admin/risk/backtest`.
pub async fn backtest(state: &AppState, b: BacktestRequest) -> ApiResult<Value> {
    let run = run_backtest(&state.db, b.rule, b.from_ms, b.to_ms).await?;
    serde_json::to_value(run).map_err(|e| {
        tracing::error!(error = %e, "backtest report not serializable");
        ApiError::internal()
    })
}

// ------------------------------------------------------------------ cases

/// Most cases listed at once.
pub const MAX_CASES_LISTED: i64 = 100;
/// Decisions shown with a case.
pub const CASE_DECISIONS: i64 = 50;
/// Longest case note and freeze reason, in characters.
pub const MAX_NOTE_CHARS: usize = 2_000;

fn case_json(k: &Case) -> Value {
    json!({
        "id": k.id,
        "customer_id": k.customer_id,
        "status": k.status,
        "resolution": k.resolution,
        "assigned_to": k.assigned_to,
        "decisions": k.decisions,
        "opened_ms": k.opened_ms,
        "updated_ms": k.updated_ms,
        "note": k.note,
    })
}

fn decision_json(d: &DecisionRecord) -> Value {
    let parsed = |s: &str, empty: Value| serde_json::from_str(s).unwrap_or(empty);
    json!({
        "id": d.id,
        "at_ms": d.at_ms,
        "event_kind": d.event_kind,
        "ref_id": d.ref_id,
        "outcome": d.outcome,
        "decided_by": d.decided_by,
        "fired": parsed(&d.fired, json!([])),
        "shadow": parsed(&d.shadow, json!([])),
        "features": parsed(&d.features, json!({})),
        "case_id": d.case_id,
    })
}

/// Cases with `status` (open by default), most recently updated first.
pub async fn list_cases(
    state: &AppState,
    status: Option<String>,
    limit: Option<i64>,
) -> ApiResult<Value> {
    let status = status.unwrap_or_else(|| "open".into());
    if !["open", "resolved"].contains(&status.as_str()) {
        return Err(ApiError::invalid_param(
            "invalid_query",
            "status",
            "status is open or resolved.",
        ));
    }
    let limit = limit.unwrap_or(50);
    if !(1..=MAX_CASES_LISTED).contains(&limit) {
        return Err(ApiError::invalid_param(
            "invalid_query",
            "limit",
            format!("limit must be 1 to {MAX_CASES_LISTED}."),
        ));
    }
    let cases = state
        .db
        .read(move |c| store::cases(c, &status, limit))
        .await?;
    Ok(json!({"data": cases.iter().map(case_json).collect::<Vec<_>>()}))
}

/// A case, its customer's standing and their recent decisions (newest first) with the
/// rules that fired and the features they read: everything needed to explain them.
pub async fn get_case(state: &AppState, id: String) -> ApiResult<Value> {
    let (case, customer, decisions) = state
        .db
        .read(move |c| {
            let Some(k) = store::case_by_id(c, &id)? else {
                return Ok::<_, StoreError>(None);
            };
            let customer = customers::by_id(c, &k.customer_id)?;
            let decisions = store::decisions_of(c, &k.customer_id, CASE_DECISIONS)?;
            Ok(Some((k, customer, decisions)))
        })
        .await?
        .ok_or_else(|| ApiError::not_found("case"))?;
    let mut out = case_json(&case);
    out["customer"] = match customer {
        Some(k) => json!({"id": k.id, "status": k.status, "created_ms": k.created_ms}),
        None => Value::Null,
    };
    out["recent_decisions"] = decisions.iter().map(decision_json).collect();
    Ok(out)
}

/// `POST /v1/admin/risk/cases/{id}/assign`: to `staff_id`, or to the caller when absent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignCase {
    #[serde(default)]
    pub staff_id: Option<String>,
}

/// An open case, or the error to answer.
fn open_case(c: &mut dyn Conn, id: &str) -> ApiResult<Case> {
    let k = store::case_by_id(c, id)?.ok_or_else(|| ApiError::not_found("case"))?;
    if k.status != "open" {
        return Err(ApiError::conflict(
            "case_resolved",
            "The case is resolved; a new decision on the customer opens a new one.",
        ));
    }
    Ok(k)
}

/// Assigns an open case to a staff member who may work cases.
pub async fn assign_case(
    state: &AppState,
    staff_id: &str,
    id: String,
    b: AssignCase,
) -> ApiResult<Value> {
    let assignee = b.staff_id.unwrap_or_else(|| staff_id.to_string());
    let (now, staff) = (state.now_ms(), staff_id.to_string());
    let case = state
        .db
        .write(move |c| {
            open_case(c, &id)?;
            let role = store::active_staff_role(c, &assignee)?;
            if !role.is_some_and(|r| Permission::WorkCases.allows(&r)) {
                return Err(ApiError::invalid_param(
                    "invalid_assignee",
                    "staff_id",
                    "Cases are assigned to active staff whose role may work them (analyst, security, admin).",
                ));
            }
            if !store::assign_case(c, &id, &assignee, now)? {
                return Err(ApiError::conflict(
                    "case_resolved",
                    "The case is resolved; a new decision on the customer opens a new one.",
                ));
            }
            let details = json!({"assigned_to": assignee}).to_string();
            audit::append(c, &staff, "risk.case_assigned", &id, &details, now)?;
            store::case_by_id(c, &id)?.ok_or_else(|| ApiError::not_found("case"))
        })
        .await?;
    Ok(case_json(&case))
}

/// `POST /v1/admin/risk/cases/{id}/resolve`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveCase {
    pub resolution: Resolution,
    pub note: String,
}

/// How a case ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// The customer did it; nothing more happens.
    Legitimate,
    /// Not the customer: the account is frozen and signed out everywhere.
    Fraud,
}

/// A note or reason: trimmed, 1 to [`MAX_NOTE_CHARS`] characters.
fn note_text(s: &str, param: &str) -> ApiResult<String> {
    let t = s.trim();
    if t.is_empty() || t.chars().count() > MAX_NOTE_CHARS {
        return Err(ApiError::invalid_param(
            "invalid_note",
            param,
            format!("{param} must be 1 to {MAX_NOTE_CHARS} characters."),
        ));
    }
    Ok(t.to_string())
}

/// Freezes a customer in the caller's transaction: status `frozen`, every session and device
/// binding ended, the customer told through the outbox, and the audit record (`reason` is
/// kept in the audit record only, never in the message). False, and nothing done, when the
/// customer is frozen already (a frozen account cannot sign in, so it has nothing to end).
fn freeze_in(
    c: &mut dyn Conn,
    staff_id: &str,
    customer_id: &str,
    reason: &Value,
    now: i64,
) -> ApiResult<bool> {
    let customer =
        customers::by_id(c, customer_id)?.ok_or_else(|| ApiError::not_found("customer"))?;
    if customer.status == "frozen" {
        return Ok(false);
    }
    identity::set_status(c, customer_id, "frozen")?;
    customers::revoke_everything(c, customer_id, now)?;
    notify_and_audit(c, staff_id, "customer.frozen", customer_id, reason, now)?;
    Ok(true)
}

/// The customer's security message (ids only) and the audit record with the staff member's
/// reason, in the caller's transaction: `security_event`, with the reason kept out of the
/// outbox payload.
fn notify_and_audit(
    c: &mut dyn Conn,
    staff_id: &str,
    topic: &str,
    customer_id: &str,
    reason: &Value,
    now: i64,
) -> Result<(), StoreError> {
    super::emit(
        c,
        topic,
        customer_id,
        &json!({"customer_id": customer_id}),
        now,
    )?;
    let details = json!({"customer_id": customer_id, "reason": reason}).to_string();
    audit::append(c, staff_id, topic, customer_id, &details, now)?;
    Ok(())
}

/// Resolves an open case; as fraud, the customer is frozen in the same transaction.
pub async fn resolve_case(
    state: &AppState,
    staff_id: &str,
    id: String,
    b: ResolveCase,
) -> ApiResult<Value> {
    let note = note_text(&b.note, "note")?;
    let (now, staff) = (state.now_ms(), staff_id.to_string());
    let resolution = match b.resolution {
        Resolution::Legitimate => "legitimate",
        Resolution::Fraud => "fraud",
    };
    let (case, customer_status) = state
        .db
        .write(move |c| {
            let k = open_case(c, &id)?;
            if !store::resolve_case(c, &id, resolution, &note, now)? {
                return Err(open_case(c, &id).err().unwrap_or_else(ApiError::internal));
            }
            let details = json!({"resolution": resolution, "customer_id": k.customer_id});
            audit::append(
                c,
                &staff,
                "risk.case_resolved",
                &id,
                &details.to_string(),
                now,
            )?;
            if b.resolution == Resolution::Fraud {
                let reason = json!({"case_id": id, "resolution": "fraud"});
                freeze_in(c, &staff, &k.customer_id, &reason, now)?;
            }
            let status = customers::by_id(c, &k.customer_id)?.map(|x| x.status);
            let k = store::case_by_id(c, &id)?.ok_or_else(|| ApiError::not_found("case"))?;
            Ok((k, status))
        })
        .await?;
    state.wake_dispatcher();
    let mut out = case_json(&case);
    out["customer_status"] = json!(customer_status);
    Ok(out)
}

/// `POST /v1/admin/customers/{id}/freeze` and `/unfreeze`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeRequest {
    pub reason: String,
}

/// Freezes a customer: every session and device binding ends, and the customer is told.
pub async fn freeze(
    state: &AppState,
    staff_id: &str,
    customer_id: String,
    b: FreezeRequest,
) -> ApiResult<Value> {
    let reason = json!(note_text(&b.reason, "reason")?);
    let (now, staff) = (state.now_ms(), staff_id.to_string());
    let id = customer_id.clone();
    let changed = state
        .db
        .write(move |c| freeze_in(c, &staff, &id, &reason, now))
        .await?;
    if !changed {
        return Err(ApiError::conflict(
            "already_frozen",
            "The customer is already frozen.",
        ));
    }
    state.wake_dispatcher();
    Ok(json!({"customer_id": customer_id, "status": "frozen"}))
}

/// Unfreezes a customer: they can sign in again (every device needs its second factor anew,
/// since the freeze ended every binding), and they are told.
pub async fn unfreeze(
    state: &AppState,
    staff_id: &str,
    customer_id: String,
    b: FreezeRequest,
) -> ApiResult<Value> {
    let reason = json!(note_text(&b.reason, "reason")?);
    let (now, staff) = (state.now_ms(), staff_id.to_string());
    let id = customer_id.clone();
    state
        .db
        .write(move |c| {
            let customer =
                customers::by_id(c, &id)?.ok_or_else(|| ApiError::not_found("customer"))?;
            if customer.status != "frozen" {
                return Err(ApiError::conflict(
                    "not_frozen",
                    "The customer is not frozen.",
                ));
            }
            identity::set_status(c, &id, "active")?;
            notify_and_audit(c, &staff, "customer.unfrozen", &id, &reason, now)?;
            Ok(())
        })
        .await?;
    state.wake_dispatcher();
    Ok(json!({"customer_id": customer_id, "status": "active"}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_matrix() {
        use Permission::*;
        let all = [
            ReadRules, WriteRules, Backtest, ReadCases, WorkCases, Freeze,
        ];
        let may = |role: &str| -> Vec<Permission> {
            all.iter().copied().filter(|p| p.allows(role)).collect()
        };
        assert_eq!(may("support"), vec![ReadRules, ReadCases]);
        assert_eq!(
            may("analyst"),
            vec![ReadRules, WriteRules, Backtest, ReadCases, WorkCases]
        );
        assert_eq!(
            may("security"),
            vec![ReadRules, ReadCases, WorkCases, Freeze]
        );
        assert_eq!(may("admin"), all.to_vec());
        assert!(may("finance").is_empty());
        assert!(may("root").is_empty() && may("").is_empty());
        for p in all {
            assert!(
                p.roles()
                    .iter()
                    .all(|r| crate::app::staff::ROLES.contains(r))
            );
        }
    }

    #[test]
    fn rule_errors_name_the_field_and_the_position() {
        let spec = |name: &str, source: &str| RuleSpec {
            name: name.into(),
            description: String::new(),
            source: source.into(),
            priority: 1,
            mode: Mode::Shadow,
            version: 1,
        };
        let e = check(spec("x", "block when payment.amont > 1")).unwrap_err();
        assert_eq!(
            (e.code, e.param.as_deref()),
            ("invalid_rule", Some("source"))
        );
        assert!(e.message.contains("at 1:12"), "{}", e.message);
        let e = check(spec("Bad Name", "block when payment.amount > 1")).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("name"));
        assert!(check(spec("ok.rule", "block when payment.amount > 1")).is_ok());
    }

    #[test]
    fn journal_entries_read_back_or_are_skipped() {
        let record = |kind: &str, outcome: &str, features: &str| DecisionRecord {
            id: "dec_1".into(),
            at_ms: 5,
            customer_id: Some("cus_1".into()),
            event_kind: kind.to_string().into(),
            ref_id: None,
            outcome: outcome.to_string().into(),
            decided_by: None,
            fired: "[]".into(),
            shadow: "[]".into(),
            features: features.into(),
            case_id: Some("case_1".into()),
        };
        let e = journaled_event(&record("payment", "step_up", r#"{"payment.amount": 800}"#))
            .expect("reads back");
        assert_eq!(
            (e.event_kind, e.recorded, e.recorded_case, e.at_ms),
            (EventKind::Payment, Outcome::StepUp, true, 5)
        );
        assert!(journaled_event(&record("teleport", "allow", "{}")).is_none());
        assert!(journaled_event(&record("payment", "maybe", "{}")).is_none());
        assert!(journaled_event(&record("payment", "allow", r#"{"no.such": 1}"#)).is_none());
        assert!(journaled_event(&record("payment", "allow", "not json")).is_none());
    }
}
