//! Renters reaching their rented device without any public port: `ssh -J LOGIN@server:2222 user@SUBDOMAIN`.
//!
//! OpenSSH's jump asks the jump host for a `direct-tcpip` channel to `SUBDOMAIN:22`. We accept it only for
//! the device of the renter's active rental, and carry it through that device's tunnel exactly as a
//! connection to its public port would be (a `forwarded-tcpip` channel to the device). The connection is
//! cut when the rental ends, by time or early (`rental_ended` notification from any instance).

use super::deadline;
use super::tunnels::SshShared;
use crate::rentals::{self, jump::JumpGrant};
use russh::server::{ChannelOpenHandle, Handle, Msg};
use russh::{Channel, ChannelOpenFailure, Disconnect};
use std::sync::Arc;
use tokio::task::AbortHandle;

/// Accepts or refuses a renter's `direct-tcpip` request.
pub async fn open(
    shared: &Arc<SshShared>,
    grant: &JumpGrant,
    channel: Channel<Msg>,
    host: &str,
    port: u32,
    originator: (&str, u32),
    reply: ChannelOpenHandle,
) -> Result<(), &'static str> {
    if !host.eq_ignore_ascii_case(&grant.subdomain) || port != 22 {
        reply
            .reject(ChannelOpenFailure::Other {
                code: 1,
                reason: format!("your rental reaches only {}:22", grant.subdomain),
            })
            .await;
        return Err("direct-tcpip outside the rental");
    }
    let Some((device, address, device_port)) = shared.registry.current(grant.device_id) else {
        reply
            .reject(ChannelOpenFailure::Other {
                code: 2,
                reason: "the device is offline right now; try again in a minute".into(),
            })
            .await;
        return Err("device offline");
    };
    reply.accept().await;
    let (origin_addr, origin_port) = (originator.0.to_owned(), originator.1);
    let shared = Arc::clone(shared);
    let device_id = grant.device_id;
    // Opening a channel to the device waits for its answer: never inside a handler (it would stall this
    // connection's event loop), always from a task.
    tokio::spawn(async move {
        let opened = device
            .channel_open_forwarded_tcpip(address, u32::from(device_port), origin_addr, origin_port)
            .await;
        let to_device = match opened {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(device = %device_id, error = %e, "device refused the renter's connection");
                let _ = channel.close().await;
                return;
            }
        };
        let mut renter = channel.into_stream();
        let mut device = to_device.into_stream();
        if let Ok((up, down)) = tokio::io::copy_bidirectional(&mut renter, &mut device).await {
            shared.metrics.bytes(up, down);
        }
    });
    Ok(())
}

/// Disconnects the renter when the rental ends: on its `rental_ended` event, or at its end time at the
/// latest (re-read then, so a renewal keeps the session). Abort the returned handle when the connection
/// ends first.
pub fn watchdog(shared: &SshShared, grant: &JumpGrant, handle: Handle) -> AbortHandle {
    let mut ended = shared.bus.rental_ended();
    let mut access = shared.bus.user_access();
    let rental = grant.rental_id;
    let renter = grant.renter_id;
    let pool = shared.pool.clone();
    let ends_at = grant.ends_at;
    let task = tokio::spawn(async move {
        let over = deadline::rental_over(ends_at, || rentals::jump::active_until(&pool, rental));
        tokio::pin!(over);
        loop {
            tokio::select! {
                () = &mut over => break,
                event = ended.recv() => match event {
                    Ok(event) if event.rental == rental => break,
                    Ok(_) => {}
                    // Events were missed: ask the database now.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if let Ok(None) = rentals::jump::active_until(&pool, rental).await {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                // This renter's access changed (or events were missed): a disabled renter's rental no longer
                // reads as active.
                event = access.recv() => {
                    let concerned = match event {
                        Ok(event) => renter == Some(event.user),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => false,
                    };
                    if concerned && let Ok(None) = rentals::jump::active_until(&pool, rental).await {
                        break;
                    }
                }
            }
        }
        tracing::info!(%rental, "rental ended; closing the renter's connection");
        let reason = "your rental has ended".to_owned();
        let _ = handle
            .disconnect(Disconnect::ByApplication, reason, "en".into())
            .await;
    });
    task.abort_handle()
}
