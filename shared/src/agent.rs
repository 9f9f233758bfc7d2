//! What the device agent and the server say to each other over `/agent/v1`: the device's tunnel details
//! (for enrolment), the machine's facts (reported by the agent, checked here by the server), and the
//! hooks to run when rentals start and end (provisioning jobs and their outcomes).

use crate::{Hardware, ValidationError};
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
    /// `cpu_model`, `cpu_cores`, `memory_mb`, `disk_gb`, `arch` at the top level of the JSON.
    #[serde(flatten)]
    pub hardware: Hardware,
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
    /// The facts as recorded: the hardware by [`Hardware::parse`], the rest within the bounds the
    /// database holds, text without control characters. The first invalid field is reported.
    pub fn parse(self) -> Result<AgentFacts, ValidationError> {
        let hardware = self.hardware.parse().map_err(|errors| {
            errors
                .into_iter()
                .next()
                .unwrap_or_else(|| ValidationError::new("hardware", "is invalid"))
        })?;
        let text = |field: &'static str, value: Option<&str>, max: usize| match value
            .and_then(|v| crate::hardware::text_problem(v, max))
        {
            Some(message) => Err(ValidationError::new(field, message)),
            None => Ok(()),
        };
        text("os", self.os.as_deref(), 200)?;
        text("agentVersion", Some(&self.agent_version), 50)?;
        if self.agent_version.is_empty() {
            return Err(ValidationError::new("agentVersion", "must not be empty"));
        }
        Ok(AgentFacts { hardware, ..self })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_out_of_bounds_are_refused_by_field() {
        let good = AgentFacts {
            hardware: Hardware {
                cpu_model: Some("Cortex-A72".into()),
                cpu_cores: Some(4),
                memory_mb: Some(4096),
                disk_gb: Some(32),
                arch: Some("aarch64".into()),
                internet_mbps: None,
            },
            os: Some("Debian GNU/Linux 12".into()),
            agent_version: "0.1.0".into(),
            hooks: true,
        };
        assert_eq!(good.clone().parse(), Ok(good.clone()));
        // The hardware is at the top level of the JSON, as before it had a type of its own.
        let wire: AgentFacts = serde_json::from_value(serde_json::json!({
            "cpu_model": "Cortex-A72", "cpu_cores": 4, "memory_mb": 4096, "disk_gb": 32,
            "arch": "aarch64", "os": "Debian GNU/Linux 12", "agent_version": "0.1.0", "hooks": true
        }))
        .unwrap();
        assert_eq!(wire, good);
        let field = |f: AgentFacts| f.parse().unwrap_err().field;
        let with = |hardware: Hardware| AgentFacts {
            hardware,
            ..good.clone()
        };
        assert_eq!(
            field(with(Hardware {
                cpu_cores: Some(0),
                ..good.hardware.clone()
            })),
            "cpuCores"
        );
        assert_eq!(
            field(with(Hardware {
                memory_mb: Some(-1),
                ..good.hardware.clone()
            })),
            "memoryMb"
        );
        assert_eq!(
            field(with(Hardware {
                arch: Some("x".repeat(33)),
                ..good.hardware.clone()
            })),
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
