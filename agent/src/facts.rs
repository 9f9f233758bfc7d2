//! The machine's facts as the operating system reports them (sysinfo), sent to the server. A fact the
//! system does not give is left out, never guessed.

use p2pvps_shared::Hardware;
use p2pvps_shared::agent::AgentFacts;

/// Reads CPU, memory, the largest disk, architecture and OS.
pub fn read() -> AgentFacts {
    use sysinfo::{Disks, System};
    let mut facts = AgentFacts {
        hardware: Hardware {
            arch: Some(System::cpu_arch()).filter(|a| !a.is_empty()),
            ..Hardware::default()
        },
        os: System::long_os_version()
            .ok()
            .map(|o| o.chars().take(200).collect()),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        ..AgentFacts::default()
    };
    if let Ok(mut system) = System::new() {
        system.refresh_cpu_all();
        system.refresh_memory();
        facts.hardware.cpu_model = system
            .cpus()
            .first()
            .map(|c| c.brand().trim().chars().take(200).collect::<String>())
            .filter(|b| !b.is_empty());
        facts.hardware.cpu_cores = i32::try_from(system.cpus().len()).ok().filter(|n| *n > 0);
        facts.hardware.memory_mb = i32::try_from(system.total_memory() / (1024 * 1024))
            .ok()
            .filter(|m| *m > 0);
    }
    if let Ok(disks) = Disks::new_with_refreshed_list() {
        facts.hardware.disk_gb = disks
            .iter()
            .map(|d| d.total_space())
            .max()
            .and_then(|b| i32::try_from(b / 1_000_000_000).ok())
            .filter(|g| *g > 0);
    }
    facts
}
