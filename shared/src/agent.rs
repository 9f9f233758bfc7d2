//! What the device agent and the server say to each other over `/agent/v1`: the device's tunnel details
//! (for enrolment), the machine's facts (reported by the agent, checked here by the server), and the
//! hooks to run when rentals start and end (provisioning jobs and their outcomes).

use crate::ValidationError;
use serde::{Deserialize, Serialize};

/// `GET /agent/v1/device`: where and how the device keeps its tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceTunnel {
    pub device: String,
    /// The SSH server devices connect to, as `host:port`.
    pub ssh_address: String,
    /// Its host key's SHA-256 fingerprint (`SHA256:...`), for the agent to pin.
    pub host_key_fingerprint: String,
    /// The device's public port on the server.
    pub tunnel_port: u16,
    pub subdomain: String,
}

/// `POST /agent/v1/facts`: the machine as the agent reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentFacts {
    pub cpu_model: Option<String>,
    pub cpu_cores: Option<i32>,
    pub memory_mb: Option<i32>,
    pub disk_gb: Option<i32>,
    pub arch: Option<String>,
    pub os: Option<String>,
    pub agent_version: String,
    /// Whether the agent runs the owner's start and end hooks for rentals (provisions renters' accounts).
    #[serde(default)]
    pub hooks: bool,
}

/// `GET /agent/v1/jobs`: a hook the agent should run now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionJob {
    pub rental: String,
    pub action: crate::HookAction,
    /// The renter's login name on the device (a Unix user name: `r` and nine letters or digits).
    pub login: String,
    /// The renter's password (the rental's secret), for `start` only.
    pub password: Option<String>,
    /// When the rental ends (RFC 3339), for `start`.
    pub ends_at: Option<String>,
}

/// `POST /agent/v1/jobs/{rental}/{action}`: how the hook went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobOutcome {
    pub ok: bool,
    /// The hook's last words (its standard error's tail), shown to the owner.
    #[serde(default)]
    pub message: String,
}

impl JobOutcome {
    /// The longest message kept.
    pub const MAX_MESSAGE: usize = 500;

    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.message.chars().count() > Self::MAX_MESSAGE {
            return Err(ValidationError::new(
                "message",
                format!("must be at most {} characters", Self::MAX_MESSAGE),
            ));
        }
        if self
            .message
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(ValidationError::new(
                "message",
                "must not contain control characters other than newlines and tabs",
            ));
        }
        Ok(())
    }
}

impl AgentFacts {
    /// Every fact within the bounds the database holds, text without control characters.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let text = |field: &'static str, value: &Option<String>, max: usize| match value {
            Some(v) if v.chars().count() > max => Err(ValidationError::new(
                field,
                format!("must be at most {max} characters"),
            )),
            Some(v) if v.chars().any(char::is_control) => Err(ValidationError::new(
                field,
                "must not contain control characters",
            )),
            _ => Ok(()),
        };
        let number = |field: &'static str, value: Option<i32>, max: i32| match value {
            Some(n) if !(1..=max).contains(&n) => Err(ValidationError::new(
                field,
                format!("must be between 1 and {max}"),
            )),
            _ => Ok(()),
        };
        text("cpuModel", &self.cpu_model, 200)?;
        text("arch", &self.arch, 32)?;
        text("os", &self.os, 200)?;
        text("agentVersion", &Some(self.agent_version.clone()), 50)?;
        if self.agent_version.is_empty() {
            return Err(ValidationError::new("agentVersion", "must not be empty"));
        }
        number("cpuCores", self.cpu_cores, 4096)?;
        number("memoryMb", self.memory_mb, 16_777_216)?;
        number("diskGb", self.disk_gb, 1_048_576)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_out_of_bounds_are_refused_by_field() {
        let good = AgentFacts {
            cpu_model: Some("Cortex-A72".into()),
            cpu_cores: Some(4),
            memory_mb: Some(4096),
            disk_gb: Some(32),
            arch: Some("aarch64".into()),
            os: Some("Debian GNU/Linux 12".into()),
            agent_version: "0.1.0".into(),
            hooks: true,
        };
        assert_eq!(good.validate(), Ok(()));
        let field = |f: AgentFacts| f.validate().unwrap_err().field;
        assert_eq!(
            field(AgentFacts {
                cpu_cores: Some(0),
                ..good.clone()
            }),
            "cpuCores"
        );
        assert_eq!(
            field(AgentFacts {
                memory_mb: Some(-1),
                ..good.clone()
            }),
            "memoryMb"
        );
        assert_eq!(
            field(AgentFacts {
                arch: Some("x".repeat(33)),
                ..good.clone()
            }),
            "arch"
        );
        assert_eq!(
            field(AgentFacts {
                os: Some("a\nb".into()),
                ..good.clone()
            }),
            "os"
        );
        assert_eq!(
            field(AgentFacts {
                agent_version: String::new(),
                ..good
            }),
            "agentVersion"
        );
    }

    #[test]
    fn job_outcomes_are_bounded_and_printable() {
        let outcome = |message: &str| JobOutcome {
            ok: false,
            message: message.into(),
        };
        assert_eq!(outcome("useradd: user exists\n\tline 2").validate(), Ok(()));
        assert_eq!(
            outcome(&"x".repeat(JobOutcome::MAX_MESSAGE)).validate(),
            Ok(())
        );
        assert_eq!(
            outcome(&"x".repeat(JobOutcome::MAX_MESSAGE + 1))
                .validate()
                .unwrap_err()
                .field,
            "message"
        );
        assert!(outcome("\u{1b}[31mred").validate().is_err());
    }
}
