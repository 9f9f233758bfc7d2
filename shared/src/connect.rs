//! The commands a device owner pastes on the device to keep its tunnel to our SSH server. The dashboard
//! shows them; they live here so they can be tested against the real `ssh` (see `tests/`).

/// Where a device's tunnel goes and what it publishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTunnel<'a> {
    /// Our SSH server's host name and port.
    pub host: &'a str,
    pub ssh_port: u16,
    /// The device's id (its SSH user name) and its public port on our server.
    pub device_id: &'a str,
    pub device_port: u16,
    /// The device's own sshd, which the tunnel publishes.
    pub local_port: u16,
}

/// Where the unattended setup keeps the device's key and the pinned host key.
pub const KEY_FILE: &str = "/etc/p2pvps/id_ed25519";
pub const KNOWN_HOSTS_FILE: &str = "/etc/p2pvps/known_hosts";

impl DeviceTunnel<'_> {
    /// Options both forms share: fail rather than run without the forward, and notice a dead server.
    fn options(&self) -> String {
        format!(
            "-o ExitOnForwardFailure=yes -o ServerAliveInterval=30 -o ServerAliveCountMax=3 -p {}",
            self.ssh_port
        )
    }

    fn forward(&self) -> String {
        format!("{}:127.0.0.1:{}", self.device_port, self.local_port)
    }

    /// A one-off tunnel: `ssh` asks for the device credential as the password.
    pub fn ssh_command(&self) -> String {
        format!(
            "ssh -N {} -R {} {}@{}",
            self.options(),
            self.forward(),
            self.device_id,
            self.host
        )
    }

    /// Creates the device's key and pins our host key (run once, as root, on the device). The printed public
    /// key is then registered on the device in the dashboard.
    pub fn key_setup(&self, known_hosts_line: &str) -> String {
        format!(
            "sudo install -d -m 700 /etc/p2pvps && \\\n  sudo ssh-keygen -q -t ed25519 -N '' -f {KEY_FILE} && \\\n  \
             echo '{known_hosts_line}' | sudo tee {KNOWN_HOSTS_FILE} >/dev/null && \\\n  sudo cat {KEY_FILE}.pub"
        )
    }

    /// A systemd unit that keeps the tunnel up with autossh and the device's key (no password on disk).
    pub fn systemd_unit(&self) -> String {
        format!(
            "[Unit]\n\
             Description=p2pvps tunnel\n\
             Wants=network-online.target\n\
             After=network-online.target\n\
             \n\
             [Service]\n\
             Environment=AUTOSSH_GATETIME=0\n\
             ExecStart=/usr/bin/autossh -M 0 -N {} -o BatchMode=yes -o StrictHostKeyChecking=yes \
             -o UserKnownHostsFile={KNOWN_HOSTS_FILE} -i {KEY_FILE} -R {} {}@{}\n\
             Restart=always\n\
             RestartSec=10\n\
             \n\
             [Install]\n\
             WantedBy=multi-user.target\n",
            self.options(),
            self.forward(),
            self.device_id,
            self.host
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tunnel() -> DeviceTunnel<'static> {
        DeviceTunnel {
            host: "p2pvps.example",
            ssh_port: 2222,
            device_id: "0b7e",
            device_port: 6001,
            local_port: 22,
        }
    }

    #[test]
    fn the_plain_command_forwards_the_device_port_to_its_sshd() {
        assert_eq!(
            tunnel().ssh_command(),
            "ssh -N -o ExitOnForwardFailure=yes -o ServerAliveInterval=30 -o ServerAliveCountMax=3 \
             -p 2222 -R 6001:127.0.0.1:22 0b7e@p2pvps.example"
        );
    }

    #[test]
    fn the_unit_restarts_and_uses_the_key_and_pinned_host() {
        let unit = tunnel().systemd_unit();
        assert!(unit.contains("Restart=always"));
        assert!(unit.contains(&format!("-i {KEY_FILE}")));
        assert!(unit.contains("StrictHostKeyChecking=yes"));
        assert!(unit.contains("-R 6001:127.0.0.1:22 0b7e@p2pvps.example"));
    }
}
