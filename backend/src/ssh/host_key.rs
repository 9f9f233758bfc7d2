//! The server's Ed25519 host key: generated once into the data directory and reused, so devices can pin it.

use crate::infra::crypto::write_private;
use rand::RngCore;
use russh::keys::PrivateKey;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{HashAlg, LineEnding};
use std::path::Path;

pub const FILE_NAME: &str = "ssh_host_ed25519_key";

#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("cannot read or write the SSH host key {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the SSH host key {path} is not a valid OpenSSH private key: {message}")]
    Invalid { path: String, message: String },
}

/// Loads `DATA_DIR/ssh_host_ed25519_key`, creating it (mode 0600, OpenSSH format) on first use.
pub fn load_or_create(data_dir: &Path) -> Result<PrivateKey, HostKeyError> {
    let path = data_dir.join(FILE_NAME);
    let shown = path.display().to_string();
    let io = |source| HostKeyError::Io {
        path: shown.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => PrivateKey::from_openssh(text).map_err(|e| HostKeyError::Invalid {
            path: shown.clone(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            let mut seed = [0u8; 32];
            rand::rng().fill_bytes(&mut seed);
            let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| HostKeyError::Invalid {
                    path: shown.clone(),
                    message: e.to_string(),
                })?;
            match write_private(&path, text.as_bytes()) {
                Ok(()) => Ok(key),
                // Another process (a second instance, the CLI) wrote it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(data_dir),
                Err(e) => Err(io(e)),
            }
        }
        Err(e) => Err(io(e)),
    }
}

/// The OpenSSH-style fingerprint (`SHA256:...`) clients compare against.
pub fn fingerprint(key: &PrivateKey) -> String {
    key.public_key().fingerprint(HashAlg::Sha256).to_string()
}

/// The public half in `authorized_keys`/`known_hosts` form (`ssh-ed25519 AAAA...`).
pub fn public_openssh(key: &PrivateKey) -> String {
    key.public_key().to_openssh().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("p2pvps-hostkey-{}", uuid::Uuid::new_v4()));
        let a = load_or_create(&dir).unwrap();
        let b = load_or_create(&dir).unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert!(fingerprint(&a).starts_with("SHA256:"));
        assert!(public_openssh(&a).starts_with("ssh-ed25519 "));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
