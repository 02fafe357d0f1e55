//! What things are called on a MySQL server: a tenant's database and user, the
//! staging and retired databases, a restore's copies beside a tenant. MySQL limits
//! database names to 64 characters and (before MariaDB) user names to 32; a longer
//! name keeps its start and ends in a hash of the whole, so it stays unique.

use sha2::{Digest, Sha256};

use crate::error::Result;

pub const DATABASE_LIMIT: usize = 64;
pub const USER_LIMIT: usize = 32;

/// Where a deleted tenant's tables wait between delete and undelete or purge.
pub const RETIRED_PREFIX: &str = "tenantctl_deleted_";
/// A database built for a tenant, not yet any tenant's: `…_<owner token>_<n>`.
pub const STAGING_PREFIX: &str = "tenantctl_new_";
/// Scratch databases `backup verify --deep` restores into.
pub const SCRATCH_PREFIX: &str = "tenantctl_scratch_";

/// `name` within `limit` characters: itself, or its start and a hash of it.
pub fn fit(name: &str, limit: usize) -> String {
    if name.len() <= limit {
        return name.to_string();
    }
    let hash = Sha256::digest(name.as_bytes());
    let tail: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{}_{tail}", &name[..limit - tail.len() - 1])
}

/// `tenant_<slug with - as _>`, fitted: a tenant's database.
pub fn tenant_database(slug: &str) -> Result<String> {
    Ok(fit(&crate::engine::postgres::tenant_name(slug)?, DATABASE_LIMIT))
}

/// The tenant's login user, named for its database (the placement's location).
pub fn tenant_user(database: &str) -> String {
    fit(database, USER_LIMIT)
}

/// The slug a tenant database is named for, when its name is whole.
pub fn slug_of(name: &str) -> Option<String> {
    let slug = name.strip_prefix("tenant_")?.replace('_', "-");
    crate::validate::slug(&slug).ok().map(str::to_string)
}

pub fn staging_database(owner: &str) -> String {
    let token: String = owner
        .chars()
        .map(|c| match c.is_ascii_alphanumeric() {
            true => c.to_ascii_lowercase(),
            false => '_',
        })
        .collect();
    fit(
        &format!("{STAGING_PREFIX}{token}_{:08x}", rand::random::<u32>()),
        DATABASE_LIMIT,
    )
}

/// The owner token a staging database is named for (`<pid>-<hex>`).
pub fn staging_owner(name: &str) -> Option<String> {
    let (token, _random) = name.strip_prefix(STAGING_PREFIX)?.rsplit_once('_')?;
    Some(token.replacen('_', "-", 1))
}

/// `<live>__<marker>_<set id>` within the limit. A set id holds capitals and a
/// hyphen, which no tenant's name can, so these are never taken for a tenant's own.
pub fn beside_name(live: &str, marker: &str, set_id: &str) -> String {
    let tail = format!("__{marker}_{set_id}");
    let keep = DATABASE_LIMIT.saturating_sub(tail.len()).min(live.len());
    format!("{}{tail}", &live[..keep])
}

fn is_beside(name: &str, marker: &str) -> bool {
    name.starts_with("tenant_")
        && name
            .split_once(marker)
            .is_some_and(|(_, id)| id.bytes().any(|b| b.is_ascii_uppercase() || b == b'-'))
}

/// A tenant's pre-restore copy: `tenant_…__prerestore_<set id>`.
pub fn is_kept_name(name: &str) -> bool {
    is_beside(name, "__prerestore_")
}

/// A restored copy waiting to be swapped in: `tenant_…__restore_<set id>`.
pub fn is_restore_copy(name: &str) -> bool {
    is_beside(name, "__restore_")
}

pub fn is_beside_name(name: &str) -> bool {
    name.contains("__restore_") || name.contains("__prerestore_")
}

/// A quoted identifier. Names built here come from validated slugs, so the quoting
/// is a second fence, not the first.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A SQL string literal (the server runs with its default SQL mode, in which a
/// backslash escapes too).
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_fit_and_stay_apart() {
        let long = format!("tenant_{}", "a".repeat(63));
        let fitted = fit(&long, DATABASE_LIMIT);
        assert_eq!(fitted.len(), DATABASE_LIMIT);
        assert_ne!(fitted, fit(&format!("{long}b"), DATABASE_LIMIT));
        assert_eq!(fit("tenant_acme", USER_LIMIT), "tenant_acme");
        assert_eq!(tenant_user(&long).len(), USER_LIMIT);
    }

    #[test]
    fn staging_names_carry_their_owner() {
        let name = staging_database("1234-abcd");
        assert_eq!(staging_owner(&name).as_deref(), Some("1234-abcd"));
        assert!(is_kept_name(&beside_name(
            "tenant_a",
            "prerestore",
            "2026-12-03T10-00-00Z"
        )));
        assert!(!is_kept_name("tenant_a__prerestore_x"));
    }
}
