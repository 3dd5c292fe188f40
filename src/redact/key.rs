//! The redaction key: 32 secret bytes that make pseudonym digests
//! irreversible for anyone who does not hold it. Never printed, never stored
//! by slmforge; only its fingerprint appears in reports.

use std::path::Path;

use anyhow::{bail, Context};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Environment variable read by [`RedactKey::from_env`].
pub const KEY_ENV: &str = "SLMFORGE_REDACT_KEY";

/// Minimum length of key material (after trailing whitespace is trimmed).
pub const MIN_KEY_BYTES: usize = 16;

/// A 32-byte HMAC key. `Debug` prints `RedactKey(<hidden>)`; there is no
/// `Display` and no serialisation. The bytes are wiped on drop.
#[derive(Clone)]
pub struct RedactKey([u8; 32]);

impl std::fmt::Debug for RedactKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedactKey(<hidden>)")
    }
}

impl Drop for RedactKey {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl RedactKey {
    /// Key material -> key: trailing whitespace trimmed, at least
    /// [`MIN_KEY_BYTES`] bytes required, then SHA-256 to 32 bytes.
    pub fn from_bytes(material: &[u8]) -> anyhow::Result<RedactKey> {
        let trimmed = trim_end_ws(material);
        if trimmed.len() < MIN_KEY_BYTES {
            bail!(
                "redaction key material is too short: {} bytes, at least {MIN_KEY_BYTES} required",
                trimmed.len()
            );
        }
        Ok(RedactKey(Sha256::digest(trimmed).into()))
    }

    /// Reads key material from a file (see [`RedactKey::from_bytes`]).
    pub fn from_file(path: &Path) -> anyhow::Result<RedactKey> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("reading redaction key file {}", path.display()))?;
        RedactKey::from_bytes(&bytes)
            .with_context(|| format!("redaction key file {}", path.display()))
    }

    /// Reads key material from `$SLMFORGE_REDACT_KEY`: `Ok(None)` when the
    /// variable is unset, an error when it is set but too short or not UTF-8.
    pub fn from_env() -> anyhow::Result<Option<RedactKey>> {
        match std::env::var_os(KEY_ENV) {
            None => Ok(None),
            Some(v) => {
                let s = v
                    .into_string()
                    .map_err(|_| anyhow::anyhow!("{KEY_ENV} is not valid UTF-8"))?;
                RedactKey::from_bytes(s.as_bytes())
                    .with_context(|| KEY_ENV.to_string())
                    .map(Some)
            }
        }
    }

    /// A fresh random key from the OS. Pseudonyms made with it cannot be
    /// matched with any other run's.
    pub fn random() -> anyhow::Result<RedactKey> {
        let mut k = [0u8; 32];
        getrandom::fill(&mut k)
            .map_err(|e| anyhow::anyhow!("getting random bytes for the redaction key: {e}"))?;
        Ok(RedactKey(k))
    }

    /// 8 hex characters of HMAC(key, "slmforge-key-fingerprint"): says which
    /// key was used without revealing it.
    pub fn fingerprint(&self) -> String {
        let mut m = self.hmac();
        m.update(b"slmforge-key-fingerprint");
        hex::encode(&m.finalize().into_bytes()[..4])
    }

    pub(crate) fn hmac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }
}

fn trim_end_ws(b: &[u8]) -> &[u8] {
    let mut end = b.len();
    while end > 0 && b[end - 1].is_ascii_whitespace() {
        end -= 1;
    }
    &b[..end]
}
