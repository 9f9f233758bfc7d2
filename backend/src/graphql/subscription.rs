//! Subscriptions over graphql-transport-ws on `/graphql`, fed by the [`crate::infra::events`] bus.

use super::access;
use super::context::ContextExt;
use super::error::ApiError;
use super::inputs::parse_id;
use super::types::devices::DeviceStatusEventObject;
use super::types::rentals::RentalChangeObject;
use async_graphql::{Context, ID, Subscription};
use futures::{Stream, StreamExt};
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
                access::visible_device(&shared.pool, ctx.viewer(), id).await?;
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
                let visible =
                    access::sees_device_event(&shared.pool, &user, event.device_id, event.owner_id)
                        .await;
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
            let visible = access::sees_rental_event(&user, event.renter, event.owner);
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
