//! API keys and portal sessions: tokens from a CSPRNG, shown once, stored only as
//! SHA-256 hashes and compared in constant time.

use rand::Rng;
use serde::Serialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::{Actor, config, customers};
use crate::catalog::Catalog;
use crate::catalog::access::{self, ApiKey, NewKey, NewSession, Session};
use crate::catalog::model::{Customer, NewAuditEvent};
use crate::catalog::states::{CustomerStatus, KeyStatus};
use crate::error::{Error, Result};
use crate::{time, validate};

/// The scope a key gets when none is asked for.
const DEFAULT_SCOPE: &str = "sites:read";

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn random_text(length: usize) -> String {
    let mut rng = rand::rng();
    (0..length)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Compares two hashes without leaking, through timing, where they first differ.
fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// 40 characters of [a-z0-9]: 206 bits from the operating system's CSPRNG.
const SECRET_LENGTH: usize = 40;

fn active_customer(catalog: &Catalog, reference: &str, what: &str) -> Result<Customer> {
    let customer = customers::resolve(catalog.conn(), reference)?;
    if customer.status != CustomerStatus::Active {
        return Err(Error::refused(format!(
            "customer {} is {}; cannot {what}",
            customer.slug, customer.status
        )));
    }
    Ok(customer)
}

/// A key just created, with its token: the only time the token exists outside the
/// caller's hands.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedKey {
    #[serde(flatten)]
    pub key: ApiKey,
    pub token: String,
}

pub fn create_key(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    reference: &str,
    name: &str,
    scopes: &[String],
    expires_in: Option<&str>,
) -> Result<CreatedKey> {
    let name = validate::display_text("name", name)?;
    let defaulted = scopes.is_empty();
    let mut scopes: Vec<String> = if defaulted {
        vec![DEFAULT_SCOPE.to_string()]
    } else {
        scopes.to_vec()
    };
    check_scopes(catalog, &scopes, defaulted)?;
    scopes.sort();
    scopes.dedup();
    let now = chrono::Utc::now();
    let expires_at = expires_in
        .map(time::parse_lifetime)
        .transpose()?
        .map(|d| time::format(now + d));
    let customer = active_customer(catalog, reference, "get new keys")?;
    let id = random_text(8);
    let token = format!("tk_{id}_{}", random_text(SECRET_LENGTH));
    let created = catalog.write_audited(actor.name, |tx| {
        let key = access::insert_key(
            tx,
            &NewKey {
                id: &id,
                customer_id: customer.id,
                name: &name,
                scopes: &scopes,
                secret_hash: &sha256_hex(&token),
                created_at: &time::format(now),
                expires_at: expires_at.as_deref(),
            },
        )?;
        let event = NewAuditEvent::new(
            "key.create",
            "key",
            id.as_str(),
            Some(customer.id),
            json!({"name": name, "scopes": scopes, "expires_at": expires_at}),
        );
        Ok((key, [event]))
    })?;
    Ok(CreatedKey { key: created, token })
}

/// Every scope well formed and, when the operator restricts them (`key_scopes`), allowed.
/// A default the operator's list leaves out asks for `--scope` rather than blaming a
/// scope nobody typed.
fn check_scopes(catalog: &Catalog, scopes: &[String], defaulted: bool) -> Result<()> {
    for scope in scopes {
        validate::scope(scope)?;
    }
    let Some(allowed) = config::allowed_key_scopes(catalog)? else {
        return Ok(());
    };
    match scopes.iter().find(|s| !allowed.contains(s)) {
        Some(_) if defaulted => Err(Error::usage(format!(
            "give --scope: the default scope '{DEFAULT_SCOPE}' is not among the allowed scopes"
        ))
        .with_hint(format!(
            "allowed scopes (config key_scopes): {}",
            allowed.join(", ")
        ))),
        Some(refused) => Err(
            Error::usage(format!("scope '{refused}' is not allowed")).with_hint(format!(
                "allowed scopes (config key_scopes): {}",
                allowed.join(", ")
            )),
        ),
        None => Ok(()),
    }
}

pub fn list_keys(catalog: &Catalog, customer: Option<&str>) -> Result<Vec<ApiKey>> {
    let id = customer
        .map(|c| customers::resolve(catalog.conn(), c))
        .transpose()?
        .map(|c| c.id);
    access::list_keys(catalog.conn(), id)
}

/// What `key revoke` did: the key as it now is, and whether it was revoked before.
#[derive(Debug, Clone)]
pub struct KeyRevocation {
    pub key: ApiKey,
    pub already_revoked: bool,
}

/// Revokes a key. Revoking a revoked key changes nothing and is no error (as for
/// sessions): the operator's goal, a key that no longer works, holds either way.
pub fn revoke_key(catalog: &mut Catalog, actor: Actor<'_>, id: &str) -> Result<KeyRevocation> {
    catalog.write_audited(actor.name, |tx| {
        let key = access::key_by_id(tx, id)?.ok_or_else(|| {
            Error::not_found(format!("no API key '{}'", validate::printable(id)))
                .with_hint("see 'tenantctl key list'")
        })?;
        if key.revoked_at.is_some() {
            let unchanged = KeyRevocation {
                key,
                already_revoked: true,
            };
            return Ok((unchanged, None));
        }
        access::revoke_key(tx, id, &time::now())?;
        let event = NewAuditEvent::new(
            "key.revoke",
            "key",
            id,
            Some(key.customer_id),
            json!({"name": key.name}),
        );
        let key = access::key_by_id(tx, id)?.ok_or_else(|| Error::unexpected("a revoked key vanished"))?;
        let revoked = KeyRevocation {
            key,
            already_revoked: false,
        };
        Ok((revoked, Some(event)))
    })
}

/// What `key verify` says about a valid token.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub valid: bool,
    pub key_id: String,
    pub customer: String,
    pub customer_id: i64,
    pub scopes: Vec<String>,
    pub expires_at: Option<String>,
}

/// Checks a token: exit 3 when it is unknown, revoked or expired, or its customer is
/// suspended or deleted. Records when a valid key was last used.
pub fn verify_key(catalog: &mut Catalog, token: &str) -> Result<Verified> {
    let invalid = || {
        Error::not_found("the token is not a valid API key")
            .with_hint("unknown, revoked or expired, or its customer is not active")
    };
    let id = token
        .strip_prefix("tk_")
        .and_then(|rest| rest.split_once('_'))
        .map(|(id, _)| id)
        .filter(|id| id.len() == 8 && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        .ok_or_else(invalid)?;
    let stored = access::key_hash(catalog.conn(), id)?.ok_or_else(invalid)?;
    if !same_hash(&stored, &sha256_hex(token)) {
        return Err(invalid());
    }
    let key = access::key_by_id(catalog.conn(), id)?.ok_or_else(invalid)?;
    let customer = customers::resolve(catalog.conn(), &key.customer_id.to_string())?;
    if key.status != KeyStatus::Active || customer.status != CustomerStatus::Active {
        return Err(invalid());
    }
    catalog.write(|tx| access::touch_key(tx, id, &time::now()))?;
    Ok(Verified {
        valid: true,
        key_id: key.id,
        customer: customer.slug,
        customer_id: customer.id,
        scopes: key.scopes,
        expires_at: key.expires_at,
    })
}

/// A session just created, with its token.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedSession {
    #[serde(flatten)]
    pub session: Session,
    pub token: String,
}

/// What the portal does at login, for tests and scripts: a session token printed once.
pub fn create_session(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    reference: &str,
    device: Option<&str>,
    ttl: &str,
) -> Result<CreatedSession> {
    let device = device.map(|d| validate::display_text("device", d)).transpose()?;
    let ttl = time::parse_lifetime(ttl)?;
    let customer = active_customer(catalog, reference, "open sessions")?;
    let now = chrono::Utc::now();
    let id = random_text(8);
    let token = format!("ts_{id}_{}", random_text(SECRET_LENGTH));
    let session = catalog.write_audited(actor.name, |tx| {
        let session = access::insert_session(
            tx,
            &NewSession {
                id: &id,
                customer_id: customer.id,
                token_hash: &sha256_hex(&token),
                device: device.as_deref(),
                created_at: &time::format(now),
                expires_at: &time::format(now + ttl),
            },
        )?;
        let event = NewAuditEvent::new(
            "session.create",
            "session",
            id.as_str(),
            Some(customer.id),
            json!({"device": device}),
        );
        Ok((session, [event]))
    })?;
    Ok(CreatedSession { session, token })
}

pub fn list_sessions(catalog: &Catalog, customer: Option<&str>, active_only: bool) -> Result<Vec<Session>> {
    let id = customer
        .map(|c| customers::resolve(catalog.conn(), c))
        .transpose()?
        .map(|c| c.id);
    access::list_sessions(catalog.conn(), id, active_only)
}

#[derive(Debug, Clone, Serialize)]
pub struct Revoked {
    pub revoked: usize,
    pub sessions: Vec<Session>,
}

/// Revokes one session by id, or every session of a customer.
pub fn revoke_sessions(
    catalog: &mut Catalog,
    actor: Actor<'_>,
    id: Option<&str>,
    customer: Option<&str>,
) -> Result<Revoked> {
    let customer = customer
        .map(|c| customers::resolve(catalog.conn(), c))
        .transpose()?;
    catalog.write_audited(actor.name, |tx| {
        let (count, customer_id, target) = match (id, &customer) {
            (Some(id), None) => {
                let session = access::session_by_id(tx, id)?.ok_or_else(|| {
                    Error::not_found(format!("no session '{}'", validate::printable(id)))
                        .with_hint("see 'tenantctl session list'")
                })?;
                (
                    access::revoke_sessions(tx, Some(id), None, &time::now())?,
                    session.customer_id,
                    id.to_string(),
                )
            }
            (None, Some(customer)) => (
                access::revoke_sessions(tx, None, Some(customer.id), &time::now())?,
                customer.id,
                customer.slug.clone(),
            ),
            _ => return Err(Error::usage("give a session id, or --customer C --all")),
        };
        let event = (count > 0).then(|| {
            NewAuditEvent::new(
                "session.revoke",
                "session",
                target,
                Some(customer_id),
                json!({"revoked": count}),
            )
        });
        let sessions = match id {
            Some(id) => access::session_by_id(tx, id)?.into_iter().collect(),
            None => access::list_sessions(tx, Some(customer_id), false)?,
        };
        let revoked = Revoked {
            revoked: count,
            sessions,
        };
        Ok((revoked, event))
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    pub removed: usize,
}

/// Deletes expired sessions (for cron).
pub fn prune_sessions(catalog: &mut Catalog, actor: Actor<'_>) -> Result<Pruned> {
    catalog.write_audited(actor.name, |tx| {
        let removed = access::prune_sessions(tx, &time::now())?;
        let event = (removed > 0).then(|| {
            NewAuditEvent::new(
                "session.prune",
                "session",
                "expired",
                None,
                json!({"removed": removed}),
            )
        });
        Ok((Pruned { removed }, event))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_compare_equal_only_when_equal() {
        assert!(same_hash("abc", "abc"));
        assert!(!same_hash("abc", "abd"));
        assert!(!same_hash("abc", "abcd"));
        assert_eq!(random_text(8).len(), 8);
        assert_ne!(random_text(40), random_text(40));
    }
}
