//! Schema migrations, embedded in the binary and applied in order on start.
//!
//! The schema is written once (`migrations/*.sql`) in the subset both backends share; the
//! only differences (BLOB vs BYTEA, how append-only triggers are declared) are applied here.

use crate::postgres::PgConn;
use crate::sqlite::SqliteConn;
use crate::value::Conn;
use crate::{StoreError, params};

struct Migration {
    version: i64,
    common: &'static str,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    common: include_str!("../migrations/0001_init.sql"),
    sqlite: "
        CREATE TRIGGER entries_append_only_u BEFORE UPDATE ON entries BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
        CREATE TRIGGER entries_append_only_d BEFORE DELETE ON entries BEGIN SELECT RAISE(ABORT, 'ledger entries are append-only'); END;
        CREATE TRIGGER postings_append_only_u BEFORE UPDATE ON postings BEGIN SELECT RAISE(ABORT, 'ledger postings are append-only'); END;
        CREATE TRIGGER postings_append_only_d BEFORE DELETE ON postings BEGIN SELECT RAISE(ABORT, 'ledger postings are append-only'); END;
        CREATE TRIGGER audit_append_only_u BEFORE UPDATE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
        CREATE TRIGGER audit_append_only_d BEFORE DELETE ON audit_log BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    ",
    postgres: "
        CREATE FUNCTION konbini_append_only() RETURNS trigger LANGUAGE plpgsql AS $body$
        BEGIN RAISE EXCEPTION 'table % is append-only', TG_TABLE_NAME; END $body$;
        -- A statement that finds one of its own preconditions false calls this to undo itself
        -- whole (SQLSTATE KB001, StoreError::Undone): the payment's single-statement path.
        CREATE FUNCTION konbini_undo(reason text) RETURNS bigint LANGUAGE plpgsql AS $body$
        BEGIN RAISE EXCEPTION USING ERRCODE = 'KB001', MESSAGE = reason; END $body$;
        CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries FOR EACH ROW EXECUTE FUNCTION konbini_append_only();
        CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings FOR EACH ROW EXECUTE FUNCTION konbini_append_only();
        CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION konbini_append_only();
        -- Rows every payment updates in place (balances, the device's code counter, the risk
        -- counters and profile): room on their pages lets PostgreSQL update them without new
        -- index entries (HOT updates).
        ALTER TABLE accounts SET (fillfactor = 80);
        ALTER TABLE devices SET (fillfactor = 80);
        ALTER TABLE risk_velocity SET (fillfactor = 70);
    ",
}];

/// The newest schema version this binary knows.
pub fn latest_version() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL)";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn applied(conn: &mut dyn Conn) -> Result<i64, StoreError> {
    let row = conn.query_one(
        "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_migrations",
        params![],
    )?;
    row.int(0)
}

pub(crate) fn run_sqlite(conn: &mut SqliteConn) -> Result<(), StoreError> {
    conn.batch("BEGIN IMMEDIATE")?;
    let r = (|| {
        conn.batch(CREATE_TABLE)?;
        let current = applied(conn)?;
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            conn.batch(&m.common.replace("BYTEA", "BLOB"))?;
            conn.batch(m.sqlite)?;
            conn.exec(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)",
                params![m.version, now_ms()],
            )?;
        }
        Ok(())
    })();
    match r {
        Ok(()) => conn.batch("COMMIT"),
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
    }
}

pub(crate) fn run_postgres(conn: &mut PgConn) -> Result<(), StoreError> {
    conn.batch("BEGIN")?;
    let r = (|| {
        // Several nodes may start at once: one migrates, the others wait and find it done.
        conn.batch("SELECT pg_advisory_xact_lock(7262694)")?;
        conn.batch(CREATE_TABLE)?;
        let current = applied(conn)?;
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            conn.batch(m.common)?;
            conn.batch(m.postgres)?;
            conn.exec(
                "INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)",
                params![m.version, now_ms()],
            )?;
        }
        Ok(())
    })();
    match r {
        Ok(()) => conn.batch("COMMIT"),
        Err(e) => {
            let _ = conn.batch("ROLLBACK");
            Err(e)
        }
    }
}
