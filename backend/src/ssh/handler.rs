//! One SSH connection: who it is, and what it may ask for.
//!
//! A device may authenticate (credential as password, or a registered public key) and ask for
//! `tcpip-forward` of its own port. A renter may authenticate with a rental's jump login and open a
//! `direct-tcpip` channel to that rental's device (see `jump`). Everything else is refused with a proper reply: a refused `session`
//! channel means shell, exec, pty, subsystems (sftp), env, X11 and agent requests can never arrive, and
//! nothing is left unanswered for a client to hang on (russh's default exec/shell handlers send no reply).

use super::jump;
use super::tunnels::SshShared;
use super::tunnels::set_status;
use crate::devices::{self, tunnel_auth::TunnelLogin};
use crate::rentals::{self, jump::JumpGrant};
use p2pvps_shared::DeviceStatus;
use russh::keys::HashAlg;
use russh::server::{Auth, ChannelOpenHandle, Handler, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelOpenFailure};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use uuid::Uuid;

/// The bind addresses a device may name: all mean "my port on the server's tunnel address".
const ALLOWED_BIND: &[&str] = &["", "0.0.0.0", "127.0.0.1", "localhost"];

pub struct Connection {
    shared: Arc<SshShared>,
    peer: Option<SocketAddr>,
    /// Set once authenticated as a device.
    device: Option<Device>,
    /// Set once authenticated as a renter (a rental's jump login).
    renter: Option<JumpGrant>,
    /// Ends the renter's connection with the rental; aborted when the connection ends first.
    watchdog: Option<tokio::task::AbortHandle>,
    /// Set on successful authentication; the accept loop disconnects clients that never get there.
    authenticated: Arc<AtomicBool>,
}

#[derive(Clone)]
struct Device {
    id: Uuid,
    port: u16,
    /// The device's subdomain: `ssh -R SUBDOMAIN:80:...` publishes its web server there.
    subdomain: String,
    /// Set once registered as the device's current connection.
    generation: Option<u64>,
}

impl Connection {
    pub fn new(
        shared: Arc<SshShared>,
        peer: Option<SocketAddr>,
        authenticated: Arc<AtomicBool>,
    ) -> Self {
        Self {
            shared,
            peer,
            authenticated,
            device: None,
            renter: None,
            watchdog: None,
        }
    }

    fn refuse(&self, what: &str) {
        tracing::info!(peer = ?self.peer, device = ?self.device.as_ref().map(|d| d.id), request = what, "refused SSH request");
        self.shared.metrics.ssh_refused(what);
    }

    /// True when this address, or this user name from this address, is blocked after too many failures.
    fn over_limit(&self, user: &str) -> bool {
        let Some(peer) = self.peer else { return false };
        let blocked = self.shared.auth_guard.check(peer.ip(), user).is_err();
        if blocked {
            self.shared.metrics.ssh_refused("auth-rate-limit");
        }
        blocked
    }

    /// Counts a failed authentication.
    fn auth_failed(&self, user: &str) {
        self.shared.metrics.ssh_auth_failure();
        if let Some(peer) = self.peer {
            self.shared.auth_guard.failed(peer.ip(), user);
        }
    }

    fn accept_device(
        &mut self,
        user: &str,
        id: Uuid,
        login: Option<TunnelLogin>,
        method: &str,
    ) -> Auth {
        match login {
            Some(login) => {
                self.device = Some(Device {
                    id,
                    port: login.port,
                    subdomain: login.subdomain,
                    generation: None,
                });
                tracing::info!(device = %id, peer = ?self.peer, method, "device authenticated");
                Auth::Accept
            }
            None => {
                tracing::info!(user, peer = ?self.peer, method, "SSH authentication failed");
                self.auth_failed(user);
                Auth::reject()
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
        let Some(Device {
            id,
            generation: Some(generation),
            ..
        }) = self.device.as_ref()
        else {
            return;
        };
        let (id, generation) = (*id, *generation);
        if self.shared.registry.release(id, generation) {
            self.shared
                .metrics
                .ssh_tunnels_open(self.shared.registry.len());
            let shared = Arc::clone(&self.shared);
            // Drop cannot await; the runtime outlives every connection.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { set_status(&shared, id, DeviceStatus::Offline).await });
            }
        }
    }
}

fn parse_user(user: &str) -> Option<Uuid> {
    Uuid::parse_str(user).ok()
}

/// russh runs each connection as one task whose future embeds the futures of these methods, sized for the
/// largest. Database and listener work is boxed so that an idle tunnel does not carry tens of KiB of
/// future it is not running (measured: 41 KiB of the 61 KiB an idle tunnel cost before).
impl Handler for Connection {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        if self.over_limit(user) {
            return Ok(Auth::reject());
        }
        let Some(id) = parse_user(user) else {
            // Not a device id: a renter's jump login.
            let grant = Box::pin(rentals::jump::jump_login(
                &self.shared.pool,
                &self.shared.secrets,
                user,
                password,
            ))
            .await
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "rental lookup failed");
                None
            });
            return Ok(match grant {
                Some(grant) => {
                    tracing::info!(rental = %grant.rental_id, peer = ?self.peer, "renter authenticated");
                    self.renter = Some(grant);
                    Auth::Accept
                }
                None => {
                    tracing::info!(peer = ?self.peer, "SSH authentication failed (jump login)");
                    self.auth_failed(user);
                    Auth::reject()
                }
            });
        };
        let port = Box::pin(devices::tunnel_auth::tunnel_login_by_credential(
            &self.shared.pool,
            id,
            password,
        ))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "device lookup failed");
            None
        });
        Ok(self.accept_device(user, id, port, "password"))
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if self.over_limit(user) {
            return Ok(Auth::reject());
        }
        let Some(id) = parse_user(user) else {
            return Ok(self.accept_device(user, Uuid::nil(), None, "publickey"));
        };
        let fingerprint = key.public_key.fingerprint(HashAlg::Sha256).to_string();
        let port = Box::pin(devices::tunnel_auth::tunnel_login_by_key(
            &self.shared.pool,
            id,
            &fingerprint,
        ))
        .await
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "device lookup failed");
            None
        });
        Ok(self.accept_device(user, id, port, "publickey"))
    }

    async fn auth_succeeded(&mut self, session: &mut Session) -> Result<(), Self::Error> {
        self.authenticated.store(true, Ordering::Relaxed);
        if let Some(grant) = &self.renter {
            self.watchdog = Some(jump::watchdog(&self.shared, grant, session.handle()));
        }
        if let Some(device) = &mut self.device {
            device.generation = Some(self.shared.registry.register(
                device.id,
                device.port,
                session.handle(),
            ));
            self.shared
                .metrics
                .ssh_tunnels_open(self.shared.registry.len());
        }
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse("session");
        reply
            .reject(ChannelOpenFailure::Other {
                code: 1,
                reason: "this server only forwards ports: no shell, commands or sftp (use ssh -N)"
                    .into(),
            })
            .await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse("x11");
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(grant) = &self.renter {
            let originator = (originator_address, originator_port);
            let opened = Box::pin(jump::open(
                &self.shared,
                grant,
                channel,
                host_to_connect,
                port_to_connect,
                originator,
                reply,
            ))
            .await;
            if let Err(why) = opened {
                tracing::info!(rental = %grant.rental_id, host = host_to_connect, port = port_to_connect, why, "refused renter connection");
                self.shared.metrics.ssh_refused("direct-tcpip");
            }
            return Ok(());
        }
        self.refuse("direct-tcpip");
        reply
            .reject(ChannelOpenFailure::Other {
                code: 1,
                reason: "devices may not open connections through this server".into(),
            })
            .await;
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.refuse("direct-streamlocal");
        reply
            .reject(ChannelOpenFailure::AdministrativelyProhibited)
            .await;
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some(Device {
            id,
            port: own,
            subdomain,
            generation: Some(generation),
        }) = self.device.clone()
        else {
            self.refuse("tcpip-forward");
            return Ok(false);
        };
        // The sish convention: the bind address names the subdomain, port 80 means its web server.
        let web = *port == 80 && address.eq_ignore_ascii_case(&subdomain);
        if !web && (!ALLOWED_BIND.contains(&address) || (*port != 0 && *port != u32::from(own))) {
            tracing::info!(device = %id, address, port = *port, own, "refused forward of a port or name that is not the device's");
            self.refuse("tcpip-forward");
            return Ok(false);
        }
        let forwarded = if web {
            self.shared.registry.forward_web(id, generation, address)
        } else {
            *port = u32::from(own);
            Box::pin(
                self.shared
                    .registry
                    .forward(&self.shared, id, generation, address),
            )
            .await
        };
        match forwarded {
            Ok(()) => {
                if web {
                    tracing::info!(device = %id, %subdomain, "device web server published");
                } else {
                    tracing::info!(device = %id, port = own, "device tunnel up");
                }
                Box::pin(set_status(&self.shared, id, DeviceStatus::Online)).await;
                Ok(true)
            }
            Err(e) => {
                tracing::warn!(device = %id, error = %e, "device tunnel could not start");
                Ok(false)
            }
        }
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some(Device {
            id,
            port: own,
            subdomain,
            generation: Some(generation),
        }) = self.device.as_ref()
        else {
            return Ok(false);
        };
        if port == 80 && address.eq_ignore_ascii_case(subdomain) {
            self.shared.registry.cancel_web(*id, *generation);
            return Ok(true);
        }
        if port != u32::from(*own) {
            return Ok(false);
        }
        let id = *id;
        self.shared.registry.cancel(id, *generation);
        Box::pin(set_status(&self.shared, id, DeviceStatus::Offline)).await;
        Ok(true)
    }

    async fn streamlocal_forward(
        &mut self,
        _socket_path: &str,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        self.refuse("streamlocal-forward");
        Ok(false)
    }
}
