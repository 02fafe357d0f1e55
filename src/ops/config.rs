//! Catalog settings (`tenantctl config`).

use std::path::{Path, PathBuf};

use serde_json::json;

use super::Actor;
use crate::catalog::model::{NewAuditEvent, Setting};
use crate::catalog::{Catalog, plans, settings, tenants};
use crate::error::{Error, Result};
use crate::home::Home;
use crate::migrations::{self, MigrationId};
use crate::validate;

struct Key {
    name: &'static str,
    description: &'static str,
    default: Option<&'static str>,
}

const KEYS: &[Key] = &[
    Key {
        name: "platform_domain",
        description: "domain under which <slug>.<domain> resolves to a customer",
        default: None,
    },
    Key {
        name: "tenant_migrations_dir",
        description: "folder of tenant migrations V<n>__<name>.sql",
        default: None,
    },
    Key {
        name: "default_plan",
        description: "plan given to new customers without --plan",
        default: Some("starter"),
    },
    Key {
        name: "default_server",
        description: "server new customers go to without --server: 'local', a server name, or 'auto'",
        default: Some("local"),
    },
    Key {
        name: "key_scopes",
        description: "the only scopes 'key create' accepts, comma-separated; unset: any scope",
        default: None,
    },
    Key {
        name: "backup_keep_last",
        description: "backup prune: sets to keep regardless of age",
        default: Some("7"),
    },
    Key {
        name: "backup_keep_daily",
        description: "backup prune: daily sets to keep",
        default: Some("14"),
    },
    Key {
        name: "backup_keep_weekly",
        description: "backup prune: weekly sets to keep",
        default: Some("8"),
    },
    Key {
        name: "backup_keep_monthly",
        description: "backup prune: monthly sets to keep",
        default: Some("12"),
    },
];

fn key(name: &str) -> Result<&'static Key> {
    KEYS.iter().find(|k| k.name == name).ok_or_else(|| {
        let names: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
        Error::usage(format!("unknown setting '{}'", validate::printable(name)))
            .with_hint(format!("known settings: {}", names.join(", ")))
    })
}

/// A setting with its effective value: the stored one, else its default.
fn setting(catalog: &Catalog, home: &Home, key: &Key) -> Result<Setting> {
    let stored = settings::get(catalog.conn(), key.name)?;
    let default = default_of(key, home);
    Ok(Setting {
        key: key.name.to_string(),
        is_default: stored.is_none(),
        value: stored.as_ref().map(|(v, _)| v.clone()).or(default.clone()),
        default,
        description: key.description.to_string(),
        updated_at: stored.map(|(_, at)| at),
    })
}

/// A key's default; the tenant migrations folder's lies in the home, so it is the
/// one that is not a constant.
fn default_of(key: &Key, home: &Home) -> Option<String> {
    match key.name {
        "tenant_migrations_dir" => Some(home.default_tenant_migrations_dir().display().to_string()),
        _ => key.default.map(str::to_string),
    }
}

/// A setting's stored value, else its built-in default; for keys whose default does
/// not depend on the home (every one but `tenant_migrations_dir`).
pub fn stored_or_default(catalog: &Catalog, name: &str) -> Result<Option<String>> {
    let key = key(name)?;
    Ok(settings::get(catalog.conn(), key.name)?
        .map(|(v, _)| v)
        .or(key.default.map(str::to_string)))
}

/// A setting's built-in default, for when there is no catalog to ask.
pub fn default_value(name: &str) -> Option<&'static str> {
    KEYS.iter().find(|k| k.name == name).and_then(|k| k.default)
}

pub fn list(catalog: &Catalog, home: &Home) -> Result<Vec<Setting>> {
    KEYS.iter().map(|k| setting(catalog, home, k)).collect()
}

pub fn get(catalog: &Catalog, home: &Home, name: &str) -> Result<Setting> {
    setting(catalog, home, key(name)?)
}

/// Checks and normalises a value for its key.
fn normalise(catalog: &Catalog, key: &Key, value: &str) -> Result<String> {
    match key.name {
        "platform_domain" => validate::hostname(value),
        "tenant_migrations_dir" => {
            let path = std::path::absolute(value)
                .map_err(|e| Error::usage(format!("invalid path '{}': {e}", validate::printable(value))))?;
            if !path.is_dir() {
                return Err(Error::usage(format!("{} is not a folder", path.display())));
            }
            path.into_os_string()
                .into_string()
                .map_err(|_| Error::usage("the tenant migrations path must be valid UTF-8"))
        }
        "key_scopes" => scope_list(value),
        "default_server" => {
            if value != "local" && value != "auto" {
                let name = validate::server_name(value)?;
                if crate::catalog::servers::get(catalog.conn(), name)?.is_none() {
                    return Err(Error::usage(format!("unknown server '{name}'"))
                        .with_hint("see 'tenantctl server list'"));
                }
            }
            Ok(value.to_string())
        }
        "default_plan" => {
            let name = validate::plan_name(value)?;
            if plans::get(catalog.conn(), name)?.is_none() {
                return Err(
                    Error::usage(format!("unknown plan '{name}'")).with_hint("see 'tenantctl plan list'")
                );
            }
            Ok(name.to_string())
        }
        _ => value.parse::<u32>().map(|n| n.to_string()).map_err(|_| {
            Error::usage(format!(
                "{} takes a whole number, not '{}'",
                key.name,
                validate::printable(value)
            ))
        }),
    }
}

pub fn set(catalog: &mut Catalog, actor: Actor<'_>, name: &str, value: &str) -> Result<Setting> {
    let key = key(name)?;
    let value = normalise(catalog, key, value)?;
    if key.name == "tenant_migrations_dir" {
        refuse_folder_behind_the_fleet(catalog, Path::new(&value))?;
    }
    let before = settings::get(catalog.conn(), key.name)?.map(|(v, _)| v);
    if before.as_deref() != Some(value.as_str()) {
        catalog.write_audited(actor.name, |tx| {
            settings::set(tx, key.name, &value)?;
            let event = NewAuditEvent::new(
                "config.set",
                "setting",
                key.name,
                None,
                json!({"from": before, "to": value}),
            );
            Ok(((), [event]))
        })?;
    }
    setting(catalog, actor.home, key)
}

pub fn unset(catalog: &mut Catalog, actor: Actor<'_>, name: &str) -> Result<Setting> {
    let key = key(name)?;
    if key.name == "tenant_migrations_dir" {
        refuse_folder_behind_the_fleet(catalog, &actor.home.default_tenant_migrations_dir())?;
    }
    let before = settings::get(catalog.conn(), key.name)?.map(|(v, _)| v);
    if before.is_some() {
        catalog.write_audited(actor.name, |tx| {
            settings::unset(tx, key.name)?;
            let event =
                NewAuditEvent::new("config.unset", "setting", key.name, None, json!({"from": before}));
            Ok(((), [event]))
        })?;
    }
    setting(catalog, actor.home, key)
}

/// A tenant migrations folder must hold every migration a tenant has applied, unchanged:
/// otherwise every tenant would be in drift and new customers would be created from a
/// different schema. Exit 6 naming what is missing.
fn refuse_folder_behind_the_fleet(catalog: &Catalog, dir: &Path) -> Result<()> {
    let applied = tenants::applied_by_any_tenant(catalog.conn())?;
    if applied.is_empty() {
        return Ok(());
    }
    let files: Vec<MigrationId> = migrations::load_migrations(dir)?
        .iter()
        .map(MigrationId::of)
        .collect();
    let lacking: Vec<String> = applied
        .iter()
        .filter(|a| {
            !files
                .iter()
                .any(|f| f.version == a.version && f.checksum == a.checksum)
        })
        .map(|a| {
            let state = if files.iter().any(|f| f.version == a.version) {
                "changed"
            } else {
                "missing"
            };
            format!("V{}__{} ({state})", a.version, a.name)
        })
        .collect();
    if lacking.is_empty() {
        return Ok(());
    }
    Err(Error::refused(format!(
        "{} lacks tenant migrations that tenants have already applied: {}",
        dir.display(),
        lacking.join(", ")
    ))
    .with_hint("copy the current migrations into the new folder first, then set it again"))
}

/// Where tenant migrations live: the configured folder, else `HOME/tenant-migrations`.
pub fn tenant_migrations_dir(catalog: &Catalog, home: &Home) -> Result<PathBuf> {
    Ok(settings::get(catalog.conn(), "tenant_migrations_dir")?
        .map(|(v, _)| PathBuf::from(v))
        .unwrap_or_else(|| home.default_tenant_migrations_dir()))
}

/// `a, b,a` → `a,b`: every scope valid, none twice, at least one.
fn scope_list(value: &str) -> Result<String> {
    let mut scopes: Vec<&str> = Vec::new();
    for scope in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let scope = validate::scope(scope)?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return Err(Error::usage("key_scopes needs at least one scope")
            .with_hint("to allow any scope, run 'tenantctl config unset key_scopes'"));
    }
    Ok(scopes.join(","))
}

/// The scopes the operator allows on API keys; `None` allows any valid scope.
pub fn allowed_key_scopes(catalog: &Catalog) -> Result<Option<Vec<String>>> {
    Ok(settings::get(catalog.conn(), "key_scopes")?.map(|(v, _)| v.split(',').map(str::to_string).collect()))
}

/// The plan for customers created without `--plan`.
pub fn default_plan(catalog: &Catalog) -> Result<String> {
    Ok(settings::get(catalog.conn(), "default_plan")?
        .map(|(v, _)| v)
        .unwrap_or_else(|| "starter".to_string()))
}

/// Records the tenant migrations folder chosen at `init`.
pub fn remember_tenant_migrations_dir(catalog: &mut Catalog, actor: Actor<'_>, dir: &Path) -> Result<()> {
    let text = dir
        .to_str()
        .ok_or_else(|| Error::usage("the tenant migrations path must be valid UTF-8"))?;
    set(catalog, actor, "tenant_migrations_dir", text).map(|_| ())
}
