//! `agent.toml`: what `enroll` learned and `run` needs. Holds the device credential, so it is written
//! readable by its owner only.

use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// The server's base URL (its HTTP API).
    pub server: String,
    pub device: String,
    pub credential: String,
    /// The server's SSH address, `host:port`.
    pub ssh_address: String,
    /// The SSH host key fingerprint pinned at enrolment (`SHA256:...`).
    pub host_key_fingerprint: String,
    /// Where the device's own sshd listens; renters reach it through the tunnel.
    #[serde(default = "default_local_ssh")]
    pub local_ssh: String,
    /// The device's subdomain on the server (its web name).
    #[serde(default)]
    pub subdomain: String,
    /// A local web server to publish at the subdomain (`host:port`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_web: Option<String>,
    /// The owner's provisioning hooks.
    #[serde(default)]
    pub hooks: Hooks,
}

/// Executables run when a rental starts and ends, with the rental in `P2PVPS_*` environment variables:
/// `start` makes the renter's access (e.g. a Unix account), `end` removes it. Both or neither.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hooks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<std::path::PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<std::path::PathBuf>,
    /// How long a hook may run before it is killed and reported failed.
    #[serde(default = "default_hook_timeout")]
    pub timeout_secs: u64,
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            start: None,
            end: None,
            timeout_secs: default_hook_timeout(),
        }
    }
}

impl Hooks {
    /// Whether the agent provisions renters (the server then waits for the start hook).
    pub fn configured(&self) -> bool {
        self.start.is_some() && self.end.is_some()
    }
}

fn default_hook_timeout() -> u64 {
    120
}

fn default_local_ssh() -> String {
    "127.0.0.1:22".to_owned()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid agent configuration: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error(
        "{path}: set both hooks.start and hooks.end, or neither (a renter's access made must be removed)"
    )]
    Hooks { path: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let config: Self = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })?;
        if config.hooks.start.is_some() != config.hooks.end.is_some() {
            return Err(ConfigError::Hooks {
                path: path.display().to_string(),
            });
        }
        Ok(config)
    }

    /// Writes the file with mode 0600 (created so from the start: the credential is never world-readable).
    pub fn save(&self, path: &Path) -> Result<(), ConfigError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let failed = |source| ConfigError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        let text = toml::to_string(self).map_err(|e| failed(std::io::Error::other(e)))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(failed)?;
        file.write_all(text.as_bytes()).map_err(failed)
    }
}
