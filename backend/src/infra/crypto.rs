//! Tokens, hashes and the at-rest encryption of secrets we must show again.
//!
//! Invariant: a bearer secret (session token, API token, device credential) exists in clear only in the response
//! that creates it; the database keeps its SHA-256. Passwords, chosen by people and so guessable, get Argon2id.
//! A secret the renter must be able to read again later (their login) is encrypted with the server key.

use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("secret key must be 32 bytes in base64 (generate one with `openssl rand -base64 32`)")]
    BadKey,
    #[error("cannot read or write the secret key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("a stored secret could not be decrypted (wrong P2PVPS_SECRET_KEY?)")]
    Decrypt,
}

/// A fresh 32-byte random token, URL-safe base64 (43 characters).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database stores for a high-entropy token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Argon2id with OWASP's 2023 minimum parameters (19 MiB, 2 passes, 1 lane).
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("static Argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

pub fn hash_password(password: &str) -> Result<String, CryptoError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| CryptoError::Hash(e.to_string()))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            argon2()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when the account does not exist, so that "no such user" costs the same time as
/// "wrong password" and timing does not reveal which e-mails are registered.
pub fn dummy_password_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not a real password, only burns time").unwrap_or_default())
}

/// A random password for generated accounts: 20 characters from an unambiguous alphabet.
pub fn new_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..20)
        .map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char)
        .collect()
}

/// The server's symmetric key for secrets at rest.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(<key hidden>)")
    }
}

impl SecretBox {
    /// From base64 text (the `P2PVPS_SECRET_KEY` setting).
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| CryptoError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadKey)?;
        Ok(Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
        })
    }

    /// A new random key (what [`SecretBox::load_or_create`] writes on first run).
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// Loads `secret.key` from the data directory, creating it (mode 0600) on first run.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, CryptoError> {
        let path = data_dir.join("secret.key");
        let io = |source| CryptoError::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir).map_err(io)?;
                let mut key = [0u8; 32];
                rand::rng().fill_bytes(&mut key);
                let text = STANDARD.encode(key);
                write_private(&path, text.as_bytes()).map_err(io)?;
                Self::from_base64(&text)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// nonce (24 bytes) || ciphertext.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        // Encryption with a valid key cannot fail for inputs below the AEAD's 256 GiB limit.
        let sealed = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), plaintext)
            .unwrap_or_default();
        out.extend(sealed);
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < 24 {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, body) = sealed.split_at(24);
        self.cipher
            .decrypt(XNonce::from_slice(nonce), body)
            .map_err(|_| CryptoError::Decrypt)
    }
}

/// Writes a file readable only by its owner.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("wrong", &hash));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_32_random_bytes() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_eq!(token_hash(&a).len(), 32);
    }

    #[test]
    fn secret_box_round_trips_and_detects_tampering() {
        let dir = std::env::temp_dir().join(format!("p2pvps-key-{}", uuid::Uuid::new_v4()));
        let key = SecretBox::load_or_create(&dir).unwrap();
        let again = SecretBox::load_or_create(&dir).unwrap();
        let mut sealed = key.seal(b"hunter22");
        assert_eq!(again.open(&sealed).unwrap(), b"hunter22");
        sealed[30] ^= 1;
        assert!(key.open(&sealed).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
