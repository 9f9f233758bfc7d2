//! Device status events and rental changes, fanned out to every server instance through Postgres `LISTEN`/`NOTIFY`.
//!
//! A status change is written and notified in one transaction ([`crate::devices::status::record_status`]); each
//! instance runs one listener that re-publishes notifications on an in-process broadcast channel, which the
//! GraphQL subscription reads. Subscribers that fall behind lose old events rather than slowing the others.

use crate::infra::shutdown::Shutdown;
use chrono::{DateTime, Utc};
use p2pvps_shared::DeviceStatus;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::time::Duration;
use tokio::sync::broadcast;
use uuid::Uuid;

pub const DEVICE_STATUS_CHANNEL: &str = "device_status";
/// Channel on which rental ends are announced (`{"rental": id, "device": id}`), so every instance cuts
/// the renter's live connections.
pub const RENTAL_ENDED_CHANNEL: &str = "rental_ended";

/// Channel on which every change of a rental's state is announced (see [`RentalChanged`]).
pub const RENTAL_CHANGED_CHANNEL: &str = "rental_changed";
/// A user's access changed: disabled, role changed, or sessions ended (payload: `{"user": UUID}`).
pub const USER_ACCESS_CHANNEL: &str = "user_access";

/// A user's access changed: whatever they hold open (jump sessions, port connections of their rentals,
/// websocket subscriptions) is checked again, on every instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAccessChanged {
    pub user: Uuid,
}

/// Announces (at commit) that `user`'s access changed.
pub async fn user_access_changed(
    conn: &mut sqlx::PgConnection,
    user: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_notify($1, json_build_object('user', $2::uuid)::text)",
        USER_ACCESS_CHANNEL,
        user
    )
    .execute(conn)
    .await
    .map(drop)
}

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

/// How far back, before the listener noticed its connection was lost, rental ends are read again.
const RESYNC_MARGIN: chrono::Duration = chrono::Duration::seconds(60);

/// Publishes `rental_ended` for rentals that ended since `since` on devices not let again since, as the
/// NOTIFYs sent while the listener was away are lost. Runs until the database answers, then once more a
/// little later (the listener re-listens only on its next wait).
async fn resync_ended(
    pool: PgPool,
    since: chrono::DateTime<chrono::Utc>,
    ended: broadcast::Sender<RentalEnded>,
    shutdown: Shutdown,
) {
    for round in 0..2 {
        loop {
            let rows: Result<Vec<(Uuid, Uuid)>, sqlx::Error> = sqlx::query!(
                "SELECT r.id, r.device_id FROM rentals r WHERE r.state = 'ended' AND r.updated_at >= $1 \
                 AND NOT EXISTS (SELECT 1 FROM rentals n WHERE n.device_id = r.device_id \
                     AND n.state = 'active' AND n.ends_at > now())",
                since
            )
            .map(|r| (r.id, r.device_id))
            .fetch_all(&pool)
            .await;
            match rows {
                Ok(rows) => {
                    if !rows.is_empty() {
                        tracing::info!(
                            count = rows.len(),
                            round,
                            "re-read rental ends missed while reconnecting"
                        );
                    }
                    for (rental, device) in rows {
                        let _ = ended.send(RentalEnded { rental, device });
                    }
                    break;
                }
                Err(_) => {
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = shutdown.wait() => return,
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = shutdown.wait() => return,
        }
    }
}

#[derive(Clone)]
pub struct Bus {
    sender: broadcast::Sender<DeviceStatusEvent>,
    rental_ended: broadcast::Sender<RentalEnded>,
    rental_changed: broadcast::Sender<RentalChanged>,
    user_access: broadcast::Sender<UserAccessChanged>,
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
                RENTAL_ENDED_CHANNEL,
                RENTAL_CHANGED_CHANNEL,
                USER_ACCESS_CHANNEL,
            ])
            .await?;
        let (rental_ended, _) = broadcast::channel(1024);
        let (rental_changed, _) = broadcast::channel(1024);
        let (user_access, _) = broadcast::channel(1024);
        let bus = Self {
            sender,
            rental_ended,
            rental_changed,
            user_access,
        };
        let access = bus.user_access.clone();
        let out = bus.sender.clone();
        let ended = bus.rental_ended.clone();
        let changed = bus.rental_changed.clone();
        let pool = pool.clone();
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    n = listener.try_recv() => n,
                    () = shutdown.wait() => return,
                };
                match next {
                    Ok(Some(notification)) if notification.channel() == RENTAL_ENDED_CHANNEL => {
                        if let Ok(event) =
                            serde_json::from_str::<RentalEnded>(notification.payload())
                        {
                            let _ = ended.send(event);
                        }
                    }
                    Ok(Some(notification)) if notification.channel() == USER_ACCESS_CHANNEL => {
                        if let Ok(event) =
                            serde_json::from_str::<UserAccessChanged>(notification.payload())
                        {
                            let _ = access.send(event);
                        }
                    }
                    Ok(Some(notification)) if notification.channel() == RENTAL_CHANGED_CHANNEL => {
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
                    // Rentals that ended meanwhile are read again once the database answers.
                    Ok(None) => {
                        tracing::warn!("event listener lost its database connection; reconnecting");
                        let since = chrono::Utc::now() - RESYNC_MARGIN;
                        tokio::spawn(resync_ended(
                            pool.clone(),
                            since,
                            ended.clone(),
                            shutdown.clone(),
                        ));
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

    /// Users whose access changed (on any instance).
    pub fn user_access(&self) -> broadcast::Receiver<UserAccessChanged> {
        self.user_access.subscribe()
    }

    /// Rentals that ended (on any instance).
    pub fn rental_ended(&self) -> broadcast::Receiver<RentalEnded> {
        self.rental_ended.subscribe()
    }
}
