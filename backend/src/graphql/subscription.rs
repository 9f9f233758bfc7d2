//! Subscriptions over graphql-transport-ws on `/graphql`, fed by the [`crate::infra::events`] bus.

use super::context::ContextExt;
use super::error::ApiError;
use super::inputs::parse_id;
use super::query::device_access;
use super::types::{DeviceStatusEventObject, RentalChangeObject};
use crate::devices;
use async_graphql::{Context, ID, Subscription};
use futures::{Stream, StreamExt};
use p2pvps_shared::Role;
use std::sync::Arc;
use tokio::sync::broadcast::{Receiver, error::RecvError};

pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// Status changes of the devices the viewer may see (or of one device, given its id).
    async fn device_status_changed(
        &self,
        ctx: &Context<'_>,
        device_id: Option<ID>,
    ) -> Result<impl Stream<Item = DeviceStatusEventObject> + use<>, ApiError> {
        let shared = Arc::clone(ctx.shared());
        let user = ctx.viewer().user()?.clone();
        let only = match device_id {
            Some(id) => {
                let id = parse_id(&id, "deviceId")?;
                let device = devices::get(&shared.pool, id)
                    .await?
                    .ok_or_else(|| ApiError::not_found("device"))?;
                device_access(&shared.pool, ctx.viewer(), &device).await?;
                Some(id)
            }
            None => None,
        };
        let events = broadcast_stream(shared.bus.subscribe());
        Ok(events.filter_map(move |event| {
            let shared = Arc::clone(&shared);
            let user = user.clone();
            async move {
                if only.is_some_and(|id| id != event.device_id) {
                    return None;
                }
                let visible = match user.role {
                    Role::Admin => true,
                    Role::Owner => event.owner_id == user.id,
                    Role::Renter => {
                        devices::renting::is_rented_by(&shared.pool, event.device_id, user.id)
                            .await
                            .unwrap_or(false)
                    }
                };
                visible.then(|| DeviceStatusEventObject {
                    device_id: ID(event.device_id.to_string()),
                    status: event.status.into(),
                    at: event.at,
                })
            }
        }))
    }

    /// State changes of the rentals the viewer takes part in: as renter, as the device's owner, or (for
    /// admins) all. Refetch the rental for its details.
    async fn rental_changed(
        &self,
        ctx: &Context<'_>,
    ) -> Result<impl Stream<Item = RentalChangeObject> + use<>, ApiError> {
        let user = ctx.viewer().user()?.clone();
        let events = broadcast_stream(ctx.shared().bus.rental_changes());
        Ok(events.filter_map(move |event| {
            let visible =
                user.role == Role::Admin || event.renter == Some(user.id) || event.owner == user.id;
            futures::future::ready(visible.then(|| RentalChangeObject {
                rental_id: ID(event.rental.to_string()),
                device_id: ID(event.device.to_string()),
                state: event.state.into(),
            }))
        }))
    }
}

/// A `Stream` over a broadcast receiver that skips what a slow subscriber missed.
fn broadcast_stream<T: Clone + Send + 'static>(receiver: Receiver<T>) -> impl Stream<Item = T> {
    futures::stream::unfold(receiver, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(event) => return Some((event, rx)),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(skipped = n, "slow subscriber missed events")
                }
                Err(RecvError::Closed) => return None,
            }
        }
    })
}
