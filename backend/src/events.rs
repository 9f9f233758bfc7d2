//! Device status events and rental changes, fanned out to every server instance through Postgres `LISTEN`/`NOTIFY`.
//!
//! A status change is written and notified in one transaction ([`crate::devices::record_status`]); each
//! instance runs one listener that re-publishes notifications on an in-process broadcast channel, which the
//! GraphQL subscription reads. Subscribers that fall behind lose old events rather than slowing the others.

use crate::shutdown::Shutdown;
use chrono::{DateTime, Utc};
use p2pvps_shared::DeviceStatus;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::time::Duration;
use tokio::sync::broadcast;
use uuid::Uuid;

pub const DEVICE_STATUS_CHANNEL: &str = "device_status";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatusEvent {
    pub device_id: Uuid,
    pub owner_id: Uuid,
    pub status: DeviceStatus,
    pub at: DateTime<Utc>,
}

/// A rental ended: its renter's connections to the device must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RentalEnded {
    pub rental: Uuid,
    pub device: Uuid,
}

/// A rental changed state (ordered, paid, started, claimed, ended...): for the renter's, the owner's and
/// admins' live views.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RentalChanged {
    pub rental: Uuid,
    pub device: Uuid,
    pub renter: Option<Uuid>,
    pub owner: Uuid,
    pub state: p2pvps_shared::RentalState,
}

#[derive(Clone)]
pub struct Bus {
    sender: broadcast::Sender<DeviceStatusEvent>,
    rental_ended: broadcast::Sender<RentalEnded>,
    rental_changed: broadcast::Sender<RentalChanged>,
}

impl Bus {
    /// Connects the listener and returns once it is listening, so no event committed after this returns is
    /// missed. The listener task reconnects by itself if the database goes away.
    pub async fn start(pool: &PgPool, shutdown: Shutdown) -> Result<Self, sqlx::Error> {
        let (sender, _) = broadcast::channel(1024);
        let mut listener = PgListener::connect_with(pool).await?;
        listener
            .listen_all([
                DEVICE_STATUS_CHANNEL,
                crate::rentals::RENTAL_ENDED_CHANNEL,
                crate::rentals::RENTAL_CHANGED_CHANNEL,
            ])
            .await?;
        let (rental_ended, _) = broadcast::channel(1024);
        let (rental_changed, _) = broadcast::channel(1024);
        let bus = Self {
            sender,
            rental_ended,
            rental_changed,
        };
        let out = bus.sender.clone();
        let ended = bus.rental_ended.clone();
        let changed = bus.rental_changed.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    n = listener.try_recv() => n,
                    () = shutdown.wait() => return,
                };
                match next {
                    Ok(Some(notification))
                        if notification.channel() == crate::rentals::RENTAL_ENDED_CHANNEL =>
                    {
                        if let Ok(event) =
                            serde_json::from_str::<RentalEnded>(notification.payload())
                        {
                            let _ = ended.send(event);
                        }
                    }
                    Ok(Some(notification))
                        if notification.channel() == crate::rentals::RENTAL_CHANGED_CHANNEL =>
                    {
                        match serde_json::from_str::<RentalChanged>(notification.payload()) {
                            Ok(event) => {
                                let _ = changed.send(event);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "ignoring malformed rental_changed notification")
                            }
                        }
                    }
                    Ok(Some(notification)) => {
                        match serde_json::from_str::<DeviceStatusEvent>(notification.payload()) {
                            Ok(event) => {
                                // No subscriber is not an error.
                                let _ = out.send(event);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "ignoring malformed device_status notification")
                            }
                        }
                    }
                    // The connection was lost; PgListener reconnects and re-listens on the next call.
                    Ok(None) => {
                        tracing::warn!("event listener lost its database connection; reconnecting")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "event listener error; retrying in 1 s");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(bus)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<DeviceStatusEvent> {
        self.sender.subscribe()
    }

    /// Rentals that changed state (on any instance).
    pub fn rental_changes(&self) -> broadcast::Receiver<RentalChanged> {
        self.rental_changed.subscribe()
    }

    /// Rentals that ended (on any instance).
    pub fn rental_ended(&self) -> broadcast::Receiver<RentalEnded> {
        self.rental_ended.subscribe()
    }
}
