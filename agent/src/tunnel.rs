//! The device's tunnel: an SSH connection to the server (host key pinned, logged in as the device) that
//! asks for the device's own port (carried to the local sshd) and, if a local web server is configured,
//! its subdomain's web traffic (`SUBDOMAIN:80`, carried to that server). Kept up for ever: reconnects with
//! capped exponential backoff and jitter, reset once a connection held.

use crate::config::Config;
use russh::client;
use russh::keys::{HashAlg, PublicKeyOrCertificate};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error(
        "the server's host key is not the pinned {pinned}: refusing to connect (re-enroll if the server's key changed)"
    )]
    HostKey { pinned: String },
    #[error("the server refused the device's login (wrong device id or credential?)")]
    Login,
    #[error("the server refused the port forward")]
    Forward,
    #[error(transparent)]
    Ssh(#[from] russh::Error),
}

struct Handler {
    pinned: String,
    local_ssh: String,
    local_web: Option<String>,
}

impl client::Handler for Handler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let got = key.public_key().fingerprint(HashAlg::Sha256).to_string();
        if got != self.pinned {
            tracing::error!(got, pinned = %self.pinned, "the server's host key does not match the pinned one");
        }
        Ok(got == self.pinned)
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: russh::Channel<client::Msg>,
        _connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        // Port 80 is the web forward (the server sends the device's own port for SSH).
        let target = match (&self.local_web, connected_port) {
            (Some(web), 80) => web.clone(),
            _ => self.local_ssh.clone(),
        };
        let from = originator_address.to_owned();
        // Connect and pipe in a task: awaiting I/O in the handler would hold up the whole connection.
        tokio::spawn(async move {
            match tokio::net::TcpStream::connect(&target).await {
                Ok(mut local) => {
                    reply.accept().await;
                    let mut remote = channel.into_stream();
                    let _ = tokio::io::copy_bidirectional(&mut remote, &mut local).await;
                }
                Err(e) => {
                    tracing::warn!(%target, error = %e, %from, "the local server does not answer");
                    drop(reply);
                }
            }
        });
        Ok(())
    }
}

/// One connection: up, forwarding, until the server or the network ends it.
async fn connect_once(config: &Config) -> Result<(), TunnelError> {
    let ssh = Arc::new(client::Config {
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        inactivity_timeout: None,
        nodelay: true,
        ..client::Config::default()
    });
    let handler = Handler {
        pinned: config.host_key_fingerprint.clone(),
        local_ssh: config.local_ssh.clone(),
        local_web: config.local_web.clone(),
    };
    let mut session = match client::connect(ssh, config.ssh_address.as_str(), handler).await {
        Ok(s) => s,
        Err(russh::Error::UnknownKey) => {
            return Err(TunnelError::HostKey {
                pinned: config.host_key_fingerprint.clone(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    let auth = session
        .authenticate_password(&config.device, &config.credential)
        .await?;
    if !auth.success() {
        return Err(TunnelError::Login);
    }
    // Port 0: "my port" (the server gives every device its own, for life).
    let port = session
        .tcpip_forward("", 0)
        .await
        .map_err(|_| TunnelError::Forward)?;
    tracing::info!(
        port,
        "tunnel up: the device's port forwards to {}",
        config.local_ssh
    );
    if let Some(web) = &config.local_web {
        session
            .tcpip_forward(config.subdomain.as_str(), 80)
            .await
            .map_err(|_| TunnelError::Forward)?;
        tracing::info!(subdomain = %config.subdomain, "web forward up: the device's subdomain forwards to {web}");
    }
    session.await?;
    Ok(())
}

/// The agent's retry delays, for the tunnel and the server's API alike: exponential from 1 s to 60 s,
/// with jitter (a fleet of devices coming back after an outage does not reconnect in step), for ever.
pub fn backoff() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_secs(1))
        .with_max_delay(Duration::from_secs(60))
        .with_jitter()
        .without_max_times()
        .build()
}

/// Keeps the tunnel up until the process ends.
pub async fn keep_up(config: &Config) {
    let schedule = backoff;
    let mut delays = schedule();
    loop {
        let started = Instant::now();
        match connect_once(config).await {
            Ok(()) => tracing::warn!("the tunnel closed; reconnecting"),
            Err(e @ TunnelError::HostKey { .. }) => tracing::error!(error = %e, "not connecting"),
            Err(e) => tracing::warn!(error = %e, "the tunnel failed; reconnecting"),
        }
        // A connection that held for a while starts the backoff over.
        if started.elapsed() > Duration::from_secs(60) {
            delays = schedule();
        }
        let wait = delays.next().unwrap_or(Duration::from_secs(60));
        tracing::info!(seconds = wait.as_secs_f32(), "next attempt");
        tokio::time::sleep(wait).await;
    }
}
