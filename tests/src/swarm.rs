//! Many devices' tunnels from one process (russh's client), for the load run in `cargo xtask chaos` and
//! the idle-tunnel memory bench: thousands of OpenSSH client processes would cost the machine more than
//! the server under test. Each device logs in with its credential, asks for its port (`tcpip-forward`
//! with port 0, as the agent does) and carries what arrives to `target`.

use russh::client;
use russh::keys::PublicKeyOrCertificate;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

struct Device {
    target: SocketAddr,
}

impl client::Handler for Device {
    type Error = russh::Error;

    /// A server on this machine started by the caller: its key is not what these runs test.
    async fn check_server_key(
        &mut self,
        _key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: russh::Channel<client::Msg>,
        _connected_address: &str,
        _connected_port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        let target = self.target;
        tokio::spawn(async move {
            if let Ok(mut local) = tokio::net::TcpStream::connect(target).await {
                reply.accept().await;
                let mut remote = channel.into_stream();
                let _ = tokio::io::copy_bidirectional(&mut remote, &mut local).await;
            }
        });
        Ok(())
    }
}

/// A device's live tunnel; dropping it closes the connection.
pub struct Tunnel {
    _session: client::Handle<Device>,
    pub port: u32,
}

/// Connects one device; its tunnel once the server granted the port forward.
pub async fn connect(
    server: SocketAddr,
    device: &str,
    credential: &str,
    target: SocketAddr,
) -> Result<Tunnel, String> {
    let config = Arc::new(client::Config {
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 3,
        inactivity_timeout: None,
        nodelay: true,
        ..client::Config::default()
    });
    let mut session = client::connect(config, server, Device { target })
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let auth = session
        .authenticate_password(device, credential)
        .await
        .map_err(|e| format!("auth: {e}"))?;
    if !auth.success() {
        return Err("login refused".into());
    }
    let port = session
        .tcpip_forward("", 0)
        .await
        .map_err(|e| format!("forward: {e}"))?;
    Ok(Tunnel {
        _session: session,
        port,
    })
}

/// Connects every `(device, credential)`, `parallel` at a time, reporting progress every 500 on stderr.
/// Returns the tunnels that came up and the errors of those that did not.
pub async fn connect_all(
    server: SocketAddr,
    devices: Vec<(String, String)>,
    target: SocketAddr,
    parallel: usize,
) -> (Vec<Tunnel>, Vec<String>) {
    use futures::StreamExt;
    let total = devices.len();
    let mut results = futures::stream::iter(devices)
        .map(|(id, credential)| async move { connect(server, &id, &credential, target).await })
        .buffer_unordered(parallel.max(1));
    let (mut up, mut failed) = (Vec::new(), Vec::new());
    while let Some(r) = results.next().await {
        match r {
            Ok(t) => up.push(t),
            Err(e) => failed.push(e),
        }
        let done = up.len() + failed.len();
        if done % 500 == 0 || done == total {
            eprintln!("    swarm: {done}/{total} devices tried, {} up", up.len());
        }
    }
    (up, failed)
}
