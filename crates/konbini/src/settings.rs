//! Settings for `konbini serve` and friends: flags, then `KONBINI_*` environment variables,
//! then an optional TOML file, then defaults.

use konbini_server::config::{Config, Limits, ProcessorConfig};
use konbini_server::secrets::MasterSecret;
use std::path::{Path, PathBuf};

/// The TOML file's shape (every key optional). Unknown keys are an error, so a typo is caught.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub database_url: Option<String>,
    pub bind: Option<String>,
    pub public_url: Option<String>,
    pub secret_key_file: Option<String>,
    pub processor_url: Option<String>,
    pub processor_timeout_ms: Option<u64>,
    pub session_idle_minutes: Option<i64>,
    pub confirmation_timeout_seconds: Option<i64>,
    pub limits: Option<Limits>,
    pub smtp_url: Option<String>,
    pub mail_from: Option<String>,
    pub sms_url: Option<String>,
    pub security: Option<SecuritySettings>,
}

/// The `[security]` section: session lifetimes, step-up and the recovery hold.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    pub session_absolute_hours: Option<i64>,
    pub step_up_minutes: Option<i64>,
    pub step_up_topup_above_minor: Option<i64>,
    pub recovery_hold_hours: Option<i64>,
    pub recovery_hold_payment_limit_minor: Option<i64>,
    pub code_ttl_minutes: Option<i64>,
    pub recovery_ttl_minutes: Option<i64>,
    pub contact_revert_days: Option<i64>,
}

impl SecuritySettings {
    fn apply(&self, c: &mut Config) {
        let set = |v: Option<i64>, unit_ms: i64, field: &mut i64| {
            if let Some(v) = v {
                *field = v.saturating_mul(unit_ms);
            }
        };
        set(
            self.session_absolute_hours,
            3_600_000,
            &mut c.session_absolute_ms,
        );
        set(self.step_up_minutes, 60_000, &mut c.step_up_window_ms);
        set(
            self.step_up_topup_above_minor,
            1,
            &mut c.step_up_topup_above_minor,
        );
        set(self.recovery_hold_hours, 3_600_000, &mut c.recovery_hold_ms);
        set(
            self.recovery_hold_payment_limit_minor,
            1,
            &mut c.recovery_hold_payment_limit_minor,
        );
        set(self.code_ttl_minutes, 60_000, &mut c.code_ttl_ms);
        // Recovery links and codes live at most 15 minutes, whatever the file says.
        set(
            self.recovery_ttl_minutes.map(|m| m.min(15)),
            60_000,
            &mut c.recovery_ttl_ms,
        );
        set(
            self.contact_revert_days,
            86_400_000,
            &mut c.contact_revert_ttl_ms,
        );
    }
}

pub fn load_file(path: Option<&Path>) -> Result<FileSettings, String> {
    let Some(path) = path else {
        return Ok(FileSettings::default());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Builds the server configuration.
pub fn server_config(
    file: &FileSettings,
    public_url: Option<String>,
    processor_url: Option<String>,
) -> Config {
    let mut c = Config::default();
    if let Some(u) = public_url.or_else(|| file.public_url.clone()) {
        c.public_url = u;
    }
    if let Some(l) = &file.limits {
        c.limits = l.clone();
    }
    if let Some(m) = file.session_idle_minutes {
        c.session_idle_ms = m * 60_000;
    }
    if let Some(s) = file.confirmation_timeout_seconds {
        c.confirmation_timeout_ms = s * 1000;
    }
    if let Some(sec) = &file.security {
        sec.apply(&mut c);
    }
    if let Some(u) = std::env::var("KONBINI_SMTP_URL")
        .ok()
        .or_else(|| file.smtp_url.clone())
    {
        c.smtp_url = Some(u);
    }
    if let Some(f) = std::env::var("KONBINI_MAIL_FROM")
        .ok()
        .or_else(|| file.mail_from.clone())
    {
        c.mail_from = f;
    }
    if let Some(u) = std::env::var("KONBINI_SMS_URL")
        .ok()
        .or_else(|| file.sms_url.clone())
    {
        c.sms_url = Some(u);
    }
    if let Some(url) = processor_url.or_else(|| file.processor_url.clone()) {
        c.processor = ProcessorConfig::Http {
            url,
            timeout_ms: file.processor_timeout_ms.unwrap_or(5_000),
        };
    }
    c
}

/// The master secret: `KONBINI_SECRET_KEY` (hex), or a key file. With SQLite and neither
/// given, a key file is created beside the database on first start (mode 0600), so the demo
/// needs no setup; PostgreSQL deployments run several nodes and must share an explicit key.
pub fn master_secret(
    env_key: Option<String>,
    key_file: Option<String>,
    database_url: &str,
) -> Result<MasterSecret, String> {
    if let Some(hex) = env_key {
        let bytes =
            konbini_core::encoding::unhex(hex.trim()).ok_or("KONBINI_SECRET_KEY must be hex")?;
        return MasterSecret::new(bytes);
    }
    let path = match key_file {
        Some(p) => PathBuf::from(p),
        None => match database_url.strip_prefix("sqlite://") {
            Some(db) => {
                let db = Path::new(db.split('?').next().unwrap_or(db));
                db.with_extension("secret")
            }
            None => {
                return Err("PostgreSQL needs KONBINI_SECRET_KEY or KONBINI_SECRET_KEY_FILE (shared by every node)".into());
            }
        },
    };
    if !path.exists() {
        let key = konbini_core::encoding::hex(&konbini_server::secrets::random_bytes::<32>());
        write_private(&path, &key).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        eprintln!("created a new secret key in {}", path.display());
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bytes = konbini_core::encoding::unhex(text.trim())
        .ok_or_else(|| format!("{} must hold hex", path.display()))?;
    MasterSecret::new(bytes)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(contents.as_bytes())
    }
    #[cfg(not(unix))]
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        f.write_all(contents.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_security_section_sets_lifetimes_and_caps_recovery_links() {
        let file: FileSettings = toml::from_str(
            "[security]\nstep_up_minutes = 2\nrecovery_hold_hours = 24\nrecovery_ttl_minutes = 60\n",
        )
        .expect("toml");
        let c = server_config(&file, None, None);
        assert_eq!(c.step_up_window_ms, 2 * 60_000);
        assert_eq!(c.recovery_hold_ms, 24 * 3_600_000);
        assert_eq!(c.recovery_ttl_ms, 15 * 60_000, "never above 15 minutes");
        assert_eq!(c.session_absolute_ms, Config::default().session_absolute_ms);
        let typo: Result<FileSettings, _> = toml::from_str("[security]\nstep_up_minuts = 2\n");
        assert!(typo.is_err(), "unknown keys are refused");
    }
}
