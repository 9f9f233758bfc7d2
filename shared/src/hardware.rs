//! A machine's hardware as renters see it: typed by its owner in the dashboard or read by the device's
//! agent, checked by the same rules either way.

use crate::ValidationError;
use serde::{Deserialize, Serialize};

/// What a device is: every fact optional (an owner may not know, an OS may not say). On the agent's wire
/// these are `cpu_model`, `cpu_cores`, ...; the API names them `cpuModel`, `cpuCores`, ...
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hardware {
    pub cpu_model: Option<String>,
    pub cpu_cores: Option<i32>,
    pub memory_mb: Option<i32>,
    pub disk_gb: Option<i32>,
    pub arch: Option<String>,
    /// Only owners state it (the agent does not measure it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet_mbps: Option<i32>,
}

impl Hardware {
    /// The facts within the bounds the database holds: text trimmed (empty counts as not given), at most
    /// its length and free of control characters; numbers from 1 to their bound. Every invalid field is
    /// reported, named as the API names it.
    pub fn parse(self) -> Result<Hardware, Vec<ValidationError>> {
        let mut errors = Vec::new();
        let mut text = |field: &'static str, value: Option<String>, max: usize| {
            let value = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
            match value.as_deref().and_then(|v| text_problem(v, max)) {
                Some(message) => {
                    errors.push(ValidationError::new(field, message));
                    None
                }
                None => value,
            }
        };
        let cpu_model = text("cpuModel", self.cpu_model, 200);
        let arch = text("arch", self.arch, 32);
        let mut number = |field: &'static str, value: Option<i32>, max: i32| match value {
            Some(n) if !(1..=max).contains(&n) => {
                errors.push(ValidationError::new(
                    field,
                    format!("must be between 1 and {max}"),
                ));
                None
            }
            n => n,
        };
        let hardware = Hardware {
            cpu_model,
            cpu_cores: number("cpuCores", self.cpu_cores, 4096),
            memory_mb: number("memoryMb", self.memory_mb, 16_777_216),
            disk_gb: number("diskGb", self.disk_gb, 1_048_576),
            arch,
            internet_mbps: number("internetMbps", self.internet_mbps, 1_000_000),
        };
        if errors.is_empty() {
            Ok(hardware)
        } else {
            Err(errors)
        }
    }
}

/// What is wrong with a short text the database holds: longer than `max` characters, or with control
/// characters (the rule of every one-line fact, here and in the agent's other facts).
pub(crate) fn text_problem(value: &str, max: usize) -> Option<String> {
    if value.chars().count() > max {
        Some(format!("must be at most {max} characters"))
    } else if value.chars().any(char::is_control) {
        Some("must not contain control characters".to_owned())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::Hardware;

    #[test]
    fn facts_are_trimmed_and_every_bad_one_is_named() {
        let parsed = Hardware {
            cpu_model: Some("  Cortex-A72 ".into()),
            cpu_cores: Some(4),
            arch: Some("   ".into()),
            ..Hardware::default()
        }
        .parse()
        .unwrap();
        assert_eq!(parsed.cpu_model.as_deref(), Some("Cortex-A72"));
        assert_eq!(parsed.arch, None, "blank is not given");
        let errors = Hardware {
            cpu_model: Some("a\nb".into()),
            cpu_cores: Some(0),
            memory_mb: Some(-1),
            disk_gb: Some(1_048_577),
            arch: Some("x".repeat(33)),
            internet_mbps: Some(1_000_001),
        }
        .parse()
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "cpuModel",
                "arch",
                "cpuCores",
                "memoryMb",
                "diskGb",
                "internetMbps"
            ]
        );
        assert_eq!(errors[2].message, "must be between 1 and 4096");
        assert_eq!(errors[1].message, "must be at most 32 characters");
    }
}
