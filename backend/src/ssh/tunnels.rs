//! The registry of live device tunnels and the public port listeners that feed them.
//!
//! Invariant: at most one connection per device is current. A newer connection of the same device replaces
//! the older one at once (a rebooted Pi must not wait for a half-open TCP connection to time out): the old
//! one is disconnected, and the port listener, which outlives connections, forwards to the new one as soon
//! as it asks for `tcpip-forward`. A generation number tells a late clean-up of the old connection apart
//! from the current one.

use super::deadline;
use crate::infra::metrics::Metrics;
use crate::{devices, rentals};
use p2pvps_shared::DeviceStatus;
use russh::Disconnect;
use russh::server::Handle;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};
use uuid::Uuid;

/// Where forwarded connections go: the current connection's handle and the bind address it asked for
/// (OpenSSH matches `forwarded-tcpip` channels against the address it sent, so we echo it back).
#[derive(Clone)]
struct Target {
    handle: Handle,
    address: String,
}

struct Entry {
    generation: u64,
    handle: Handle,
    port: u16,
    /// Where the port listener sends connections; `None` between a device's connections. Kept across
    /// replacements, like the listener, so clients arriving during a reconnect wait instead of failing.
    target: watch::Sender<Option<Target>>,
    listener: Option<JoinHandle<()>>,
    /// Where the web gateway sends requests for the device's subdomain (`ssh -R SUBDOMAIN:80:...`).
    web: Option<Target>,
}

/// State every connection shares: mostly the registry below, whose port listeners need the rest (so the
/// two live in one file, and the connection handlers import both from here).
pub struct SshShared {
    pub pool: PgPool,
    pub secrets: crate::infra::crypto::SecretBox,
    pub bus: crate::infra::events::Bus,
    pub metrics: Arc<Metrics>,
    pub registry: Registry,
    pub tunnel_bind: IpAddr,
    /// Failed authentications per client address and per (address, user name) (device id or jump login).
    pub auth_guard: crate::accounts::auth_guard::AuthGuard,
}

#[derive(Default)]
pub struct Registry {
    entries: Mutex<HashMap<Uuid, Entry>>,
    next_generation: AtomicU64,
    /// Connections being carried to each device through its public port, so a rental's end can cut them.
    carried: Mutex<HashMap<Uuid, Vec<AbortHandle>>>,
    /// Devices whose last status write failed (the database was unreachable); [`retry_statuses`] writes
    /// what the registry says now once it is back.
    unwritten: Mutex<HashSet<Uuid>>,
    unwritten_added: tokio::sync::Notify,
    /// Until when each device's rental ran at the last successful check of its port (see `accept_loop`).
    let_until: Mutex<HashMap<Uuid, chrono::DateTime<chrono::Utc>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("this connection is no longer the device's current one")]
    Replaced,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        // A panic while holding the lock cannot leave the map inconsistent (every update is one insert or
        // remove), so a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `handle` the device's current connection and returns its generation. An older connection is
    /// told to go away; its port listener is kept for the new one.
    pub fn register(&self, device: Uuid, port: u16, handle: Handle) -> u64 {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed) + 1;
        let old = {
            let mut entries = self.lock();
            let (target, listener, old) = match entries.remove(&device) {
                Some(e) => {
                    e.target.send_replace(None);
                    (e.target, e.listener, Some(e.handle))
                }
                None => (watch::channel(None).0, None, None),
            };
            let entry = Entry {
                generation,
                handle,
                port,
                target,
                listener,
                web: None,
            };
            entries.insert(device, entry);
            old
        };
        if let Some(old) = old {
            tracing::info!(%device, "device reconnected; closing its previous connection");
            tokio::spawn(async move {
                let reason = "replaced by a newer connection of this device".to_owned();
                let _ = old
                    .disconnect(Disconnect::ByApplication, reason, "en".into())
                    .await;
            });
        }
        generation
    }

    /// Starts (or re-targets) the device's port listener for the connection of `generation`.
    pub async fn forward(
        &self,
        shared: &Arc<SshShared>,
        device: Uuid,
        generation: u64,
        address: &str,
    ) -> Result<(), ForwardError> {
        let (port, targets) = {
            let entries = self.lock();
            let entry = entries
                .get(&device)
                .filter(|e| e.generation == generation)
                .ok_or(ForwardError::Replaced)?;
            entry.target.send_replace(Some(Target {
                handle: entry.handle.clone(),
                address: address.to_owned(),
            }));
            if entry.listener.as_ref().is_some_and(|l| !l.is_finished()) {
                return Ok(());
            }
            (entry.port, entry.target.subscribe())
        };
        let addr = SocketAddr::new(shared.tunnel_bind, port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ForwardError::Bind { addr, source })?;
        let task = tokio::spawn(accept_loop(
            Arc::clone(shared),
            device,
            port,
            listener,
            targets,
        ));
        let mut entries = self.lock();
        match entries
            .get_mut(&device)
            .filter(|e| e.generation == generation)
        {
            Some(entry) => {
                entry.listener = Some(task);
                Ok(())
            }
            None => {
                task.abort();
                Err(ForwardError::Replaced)
            }
        }
    }

    /// Publishes the device's web server (forwarded as `address`:80) for the connection of `generation`.
    pub fn forward_web(
        &self,
        device: Uuid,
        generation: u64,
        address: &str,
    ) -> Result<(), ForwardError> {
        let mut entries = self.lock();
        let entry = entries
            .get_mut(&device)
            .filter(|e| e.generation == generation)
            .ok_or(ForwardError::Replaced)?;
        entry.web = Some(Target {
            handle: entry.handle.clone(),
            address: address.to_owned(),
        });
        Ok(())
    }

    /// Withdraws the device's web server (`cancel-tcpip-forward` of `SUBDOMAIN:80`).
    pub fn cancel_web(&self, device: Uuid, generation: u64) {
        if let Some(entry) = self
            .lock()
            .get_mut(&device)
            .filter(|e| e.generation == generation)
        {
            entry.web = None;
        }
    }

    /// Where the device's web server is reached now, if it is published over SSH.
    pub fn web(&self, device: Uuid) -> Option<(Handle, String)> {
        let entries = self.lock();
        let web = entries.get(&device)?.web.as_ref()?;
        Some((web.handle.clone(), web.address.clone()))
    }

    /// Stops forwarding for the connection of `generation` (`cancel-tcpip-forward`); the port closes.
    pub fn cancel(&self, device: Uuid, generation: u64) {
        let mut entries = self.lock();
        if let Some(entry) = entries
            .get_mut(&device)
            .filter(|e| e.generation == generation)
        {
            entry.target.send_replace(None);
            if let Some(l) = entry.listener.take() {
                l.abort();
            }
        }
    }

    /// The connection of `generation` ended. Returns true when it was the current one (the device is
    /// now offline); a replaced connection's end changes nothing.
    pub fn release(&self, device: Uuid, generation: u64) -> bool {
        let mut entries = self.lock();
        if entries
            .get(&device)
            .is_some_and(|e| e.generation == generation)
        {
            if let Some(l) = entries.remove(&device).and_then(|e| e.listener) {
                l.abort();
            }
            true
        } else {
            false
        }
    }

    fn remember_let(&self, device: Uuid, until: chrono::DateTime<chrono::Utc>) {
        let mut known = self.let_until.lock().unwrap_or_else(|p| p.into_inner());
        known.insert(device, until);
    }

    /// The end of the device's rental known from the last check, if it is still ahead.
    fn known_let(&self, device: Uuid) -> Option<chrono::DateTime<chrono::Utc>> {
        let known = self.let_until.lock().unwrap_or_else(|p| p.into_inner());
        known
            .get(&device)
            .copied()
            .filter(|u| *u > chrono::Utc::now())
    }

    /// Devices with connections carried to their ports (to re-check after missed rental-end events).
    pub fn carrying(&self) -> Vec<Uuid> {
        let carried = self.carried.lock().unwrap_or_else(|p| p.into_inner());
        carried
            .iter()
            .filter(|(_, tasks)| tasks.iter().any(|t| !t.is_finished()))
            .map(|(device, _)| *device)
            .collect()
    }

    fn unwritten_push(&self, device: Uuid) {
        let mut set = self.unwritten.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(device);
        self.unwritten_added.notify_one();
    }

    fn unwritten_remove(&self, device: Uuid) {
        let mut set = self.unwritten.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&device);
    }

    fn unwritten_snapshot(&self) -> Vec<Uuid> {
        let set = self.unwritten.lock().unwrap_or_else(|p| p.into_inner());
        set.iter().copied().collect()
    }

    /// Where a connection to the device goes right now, if its tunnel is up.
    pub fn current(&self, device: Uuid) -> Option<(Handle, String, u16)> {
        let entries = self.lock();
        let entry = entries.get(&device)?;
        let target = entry.target.borrow().clone()?;
        Some((target.handle, target.address, entry.port))
    }

    /// Remembers a connection carried to the device (forgetting finished ones).
    pub fn track(&self, device: Uuid, task: AbortHandle) {
        let mut carried = self.carried.lock().unwrap_or_else(|p| p.into_inner());
        let list = carried.entry(device).or_default();
        list.retain(|t| !t.is_finished());
        list.push(task);
    }

    /// Cuts every connection carried to the device through its public port (its rental ended; new ones are
    /// refused until the next rental, and the device's provisioner removes the renter's account).
    pub fn cut(&self, device: Uuid) -> usize {
        self.let_until
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&device);
        let list = self
            .carried
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&device)
            .unwrap_or_default();
        let live = list.iter().filter(|t| !t.is_finished()).count();
        list.iter().for_each(AbortHandle::abort);
        live
    }

    /// Number of devices with a live connection.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// Concurrent connections one device's public port carries; more are refused (a device is a small computer).
const MAX_CONNECTIONS_PER_DEVICE: usize = 64;

/// How long a client arriving while its device reconnects waits for the new connection.
const RECONNECT_GRACE: Duration = Duration::from_secs(10);

/// Accepts on the device's public port and carries each connection to the device as `forwarded-tcpip`.
async fn accept_loop(
    shared: Arc<SshShared>,
    device: Uuid,
    port: u16,
    listener: TcpListener,
    targets: watch::Receiver<Option<Target>>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS_PER_DEVICE));
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(%device, error = %e, "accept failed on device port");
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::info!(%device, %peer, "device port at its connection cap; refused");
            shared.metrics.ssh_refused("device-port-full");
            continue;
        };
        let shared = Arc::clone(&shared);
        let tracked = Arc::clone(&shared);
        let mut targets = targets.clone();
        let (tracked_tx, tracked_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _permit = permit;
            // Tracked before the check below, so a rental ending right after the check still cuts us.
            if tracked_rx.await.is_err() {
                return;
            }
            // The port is the renter's way in: closed (accepted and dropped) unless the device is let now, so
            // an idle or ended device's sshd is not on the internet.
            let checked = tokio::time::timeout(
                RENTAL_CHECK_TIMEOUT,
                rentals::jump::device_let_until(&shared.pool, device),
            )
            .await
            .unwrap_or_else(|_| Err(sqlx::Error::PoolTimedOut));
            let until = match checked {
                Ok(Some(until)) => {
                    shared.registry.remember_let(device, until);
                    until
                }
                Ok(None) => {
                    tracing::debug!(%device, %peer, "device port used while not rented; refused");
                    shared.metrics.ssh_refused("device-port-not-rented");
                    return;
                }
                // The database is unreachable: a rental known (from the last check) to run on is still
                // honoured, so renters keep working through an outage; a rental ending meanwhile is cut
                // by its event, which also forgets it here, or at its end at the latest.
                Err(e) => match shared.registry.known_let(device) {
                    Some(until) => {
                        tracing::warn!(%device, error = %e, "cannot check the device's rental; the last check allows it");
                        until
                    }
                    None => {
                        tracing::warn!(%device, error = %e, "cannot check the device's rental; refused a port connection");
                        shared.metrics.ssh_refused("device-port-unchecked");
                        return;
                    }
                },
            };
            let _ = socket.set_nodelay(true);
            // Between two connections of the device (a reboot), wait a little for the new one.
            let target = match tokio::time::timeout(
                RECONNECT_GRACE,
                targets.wait_for(Option::is_some),
            )
            .await
            {
                Ok(Ok(t)) => t.clone(),
                _ => None,
            };
            let Some(target) = target else { return };
            let originator = (peer.ip().to_string(), u32::from(peer.port()));
            let opened = target
                .handle
                .channel_open_forwarded_tcpip(
                    target.address,
                    u32::from(port),
                    originator.0,
                    originator.1,
                )
                .await;
            let channel = match opened {
                Ok(c) => c,
                Err(e) => {
                    tracing::info!(%device, error = %e, "device refused a forwarded connection");
                    return;
                }
            };
            let mut stream = channel.into_stream();
            let mut socket = socket;
            // Carried until either side closes or the rental is over, whether or not its end event arrives.
            let over = deadline::rental_over(until, || {
                rentals::jump::device_let_until(&shared.pool, device)
            });
            tokio::select! {
                carried = tokio::io::copy_bidirectional(&mut socket, &mut stream) => {
                    if let Ok((up, down)) = carried {
                        shared.metrics.bytes(up, down);
                    }
                }
                () = over => {
                    tracing::info!(%device, %peer, "rental over; cut a port connection at its end");
                }
            }
        });
        tracked.registry.track(device, task.abort_handle());
        let _ = tracked_tx.send(());
    }
}

/// Records the device's connection state. When the database is unreachable the tunnel keeps working and
/// the device is queued for [`retry_statuses`], which writes its state once the database is back.
pub async fn set_status(shared: &SshShared, device: Uuid, status: DeviceStatus) {
    if let Err(e) = devices::status::record_status(&shared.pool, device, status).await {
        tracing::warn!(%device, error = %e, "could not record device status; will retry");
        shared.registry.unwritten_push(device);
    }
}

/// How long a renter's connection waits for its rental check before the database counts as unreachable.
const RENTAL_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// How long [`retry_statuses`] waits between attempts while the database stays unreachable.
const STATUS_RETRY: Duration = Duration::from_secs(2);

/// Writes the status of every device whose last write failed, as the registry has it at the time of
/// writing (so a device that came and went during an outage ends up with its latest state), until every
/// write lands. Runs until `stop`.
pub async fn retry_statuses(shared: Arc<SshShared>, stop: crate::infra::shutdown::Shutdown) {
    loop {
        let waiting = shared.registry.unwritten_snapshot();
        if waiting.is_empty() {
            tokio::select! {
                () = shared.registry.unwritten_added.notified() => continue,
                () = stop.wait() => return,
            }
        }
        tokio::select! {
            () = tokio::time::sleep(STATUS_RETRY) => {}
            () = stop.wait() => return,
        }
        let mut written = 0usize;
        for device in waiting {
            // Taken off the queue before reading the registry: a change after this point queues it again.
            shared.registry.unwritten_remove(device);
            let status = if shared.registry.current(device).is_some() {
                DeviceStatus::Online
            } else {
                DeviceStatus::Offline
            };
            match devices::status::record_status(&shared.pool, device, status).await {
                Ok(_) => written += 1,
                Err(_) => {
                    shared.registry.unwritten_push(device);
                }
            }
        }
        if written > 0 {
            tracing::info!(written, "device statuses written after a database outage");
        }
    }
}
