//! The master key and the passwords it keeps (SPEC section 7). Server and tenant-role
//! passwords must be handed to connections, so they are encrypted, not hashed:
//! AES-256-GCM with a random 96-bit nonce per value and the row's identity as
//! associated data (a value copied to another row does not decrypt), stored as
//! `v1.<key id>.<base64 of nonce and ciphertext>`. The key is 32 random bytes from
//! `$TENANTCTL_MASTER_KEY` (base64) or `HOME/master.key` (0600).

use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::home::Home;

pub const MASTER_KEY_ENV: &str = "TENANTCTL_MASTER_KEY";
const FORMAT: &str = "v1";
const NONCE_BYTES: usize = 12;

/// A password in memory. It never shows itself in `Debug` or `Display`, so it cannot
/// slip into a log line, an error or a trace.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Self {
        Secret(text.into())
    }

    /// The plaintext, for the one place that hands it to a connection or tool.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A new random password for a tenant role: 32 characters of [A-Za-z0-9], 190 bits.
    pub fn generate() -> Self {
        use rand::Rng;
        let rng = rand::rng();
        Secret(
            rng.sample_iter(rand::distr::Alphanumeric)
                .take(32)
                .map(char::from)
                .collect(),
        )
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

pub struct MasterKey {
    cipher: Aes256Gcm,
    id: String,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 32 {
            return Err(bad_key(format!(
                "the master key is {} bytes, not 32",
                bytes.len()
            )));
        }
        let id = Sha256::digest(bytes)
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect();
        Ok(MasterKey {
            cipher: Aes256Gcm::new_from_slice(bytes).expect("a 32-byte key"),
            id,
        })
    }

    /// The key from the environment or the home; `None` when neither has one.
    pub fn load(home: &Home) -> Result<Option<Self>> {
        if let Some(text) = std::env::var_os(MASTER_KEY_ENV) {
            let text = text.to_str().unwrap_or_default().trim().to_string();
            let bytes = BASE64
                .decode(text.as_bytes())
                .map_err(|_| bad_key(format!("{MASTER_KEY_ENV} is not base64")))?;
            return Self::from_bytes(&bytes).map(Some);
        }
        let path = home.master_key();
        match std::fs::read(&path) {
            Ok(bytes) => Self::from_bytes(&bytes).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    /// The key every stored password needs: exit 6 with a hint when there is none.
    pub fn require(home: &Home) -> Result<Self> {
        Self::load(home)?.ok_or_else(|| {
            Error::refused(format!(
                "no master key: {} is missing and {MASTER_KEY_ENV} is not set",
                home.master_key().display()
            ))
            .with_hint(
                "put back the master.key this home was made with, or set TENANTCTL_MASTER_KEY; \
                 without it, re-enter server passwords (server update --url) and rotate tenant \
                 roles (db rotate-password --all)",
            )
        })
    }

    /// The key, made (32 random bytes, 0600, synced) when the home has none yet: the
    /// first `server add` does this.
    pub fn load_or_create(home: &Home) -> Result<Self> {
        if let Some(key) = Self::load(home)? {
            return Ok(key);
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        write_key_file(&home.master_key(), &bytes)?;
        Self::from_bytes(&bytes)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Encrypts `secret` for the row named by `identity` (e.g. `server:main`).
    pub fn encrypt(&self, secret: &Secret, identity: &str) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: secret.expose().as_bytes(),
                    aad: identity.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a short value");
        let mut blob = nonce.to_vec();
        blob.extend_from_slice(&sealed);
        format!("{FORMAT}.{}.{}", self.id, BASE64.encode(blob))
    }

    /// Decrypts a stored value of the row `identity`. A value made with another key,
    /// for another row or damaged is refused (exit 6), never a panic.
    pub fn decrypt(&self, stored: &str, identity: &str) -> Result<Secret> {
        let mut parts = stored.splitn(3, '.');
        let (Some(FORMAT), Some(key_id), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad_value(identity, "it is not in the v1.<key id>.<data> form"));
        };
        if key_id != self.id {
            return Err(Error::refused(format!(
                "the password of {identity} was encrypted with master key {key_id}, but the key \
                 in use is {}",
                self.id
            ))
            .with_hint(WRONG_KEY_HINT));
        }
        let blob = BASE64
            .decode(body.as_bytes())
            .map_err(|_| bad_value(identity, "its data is not base64"))?;
        if blob.len() <= NONCE_BYTES {
            return Err(bad_value(identity, "it is too short"));
        }
        let (nonce, sealed) = blob.split_at(NONCE_BYTES);
        let plain = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: identity.as_bytes(),
                },
            )
            .map_err(|_| bad_value(identity, "it does not decrypt with this key for this row"))?;
        String::from_utf8(plain)
            .map(Secret)
            .map_err(|_| bad_value(identity, "it is not text"))
    }
}

const WRONG_KEY_HINT: &str = "set TENANTCTL_MASTER_KEY or put back the master.key the value was \
made with; otherwise re-enter it (server update --url, db rotate-password)";

fn bad_key(message: String) -> Error {
    Error::refused(message)
        .with_hint("TENANTCTL_MASTER_KEY and HOME/master.key hold 32 random bytes (the variable as base64)")
}

fn bad_value(identity: &str, why: &str) -> Error {
    Error::refused(format!("the stored password of {identity} cannot be read: {why}"))
        .with_hint(WRONG_KEY_HINT)
}

/// Writes the key file once: `create_new` so two first `server add`s cannot each
/// make a key and one lose its passwords; mode 0600; synced with its folder.
fn write_key_file(path: &Path, bytes: &[u8]) -> Result<()> {
    match crate::files::write_new_private(path, bytes) {
        Ok(()) => crate::files::fsync_dir(path.parent().unwrap_or(Path::new("."))),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes(&[byte; 32]).unwrap()
    }

    #[test]
    fn a_value_decrypts_with_its_key_and_row_only() {
        let secret = Secret::new("s3cret pass");
        let stored = key(1).encrypt(&secret, "server:main");
        assert!(stored.starts_with(&format!("v1.{}.", key(1).id())));
        assert!(!stored.contains("s3cret"));
        assert_eq!(key(1).decrypt(&stored, "server:main").unwrap(), secret);
        assert_eq!(
            key(1).decrypt(&stored, "server:other").unwrap_err().exit_code(),
            6
        );
        assert_eq!(key(2).decrypt(&stored, "server:main").unwrap_err().exit_code(), 6);
        assert_eq!(
            key(1).decrypt("garbage", "server:main").unwrap_err().exit_code(),
            6
        );
    }

    #[test]
    fn every_value_gets_its_own_nonce() {
        let secret = Secret::new("same");
        assert_ne!(key(1).encrypt(&secret, "r"), key(1).encrypt(&secret, "r"));
    }

    #[test]
    fn secrets_never_print_themselves() {
        let secret = Secret::generate();
        assert_eq!(secret.expose().len(), 32);
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
    }
}
