//! Live device status over graphql-transport-ws on `/graphql`: one subscription per signed-in tab,
//! reconnecting with capped exponential backoff. Pages overlay these statuses on what they fetched, and
//! refetch when `epoch` moves (events may have been missed while disconnected).

use crate::api::{DeviceStatusChanged, RentalChanged, device_status_changed, rental_changed};
use futures::future::{AbortHandle, Abortable};
use futures::{SinkExt, StreamExt};
use gloo_net::websocket::{Message, futures::WebSocket};
use gloo_timers::future::TimeoutFuture;
use graphql_client::GraphQLQuery;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::rc::Rc;
use yew::prelude::*;

/// A device's status as the server last announced it.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveStatus {
    /// `ONLINE`, `OFFLINE` or `NEW`.
    pub status: String,
    pub at: String,
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Live {
    pub connected: bool,
    /// Whether a connection has been tried at all (so the first load does not show "reconnecting").
    pub tried: bool,
    /// Increases on every (re)connection.
    pub epoch: u32,
    /// Counts rental changes seen (the viewer's rentals and orders): pages that show rentals refetch on it.
    pub rentals: u32,
    pub statuses: Rc<HashMap<String, LiveStatus>>,
}

impl Live {
    /// The live status of a device, or `fetched` when nothing newer has been announced.
    pub fn status_of(&self, device: &str, fetched: &str) -> String {
        self.statuses
            .get(device)
            .map_or_else(|| fetched.to_owned(), |s| s.status.clone())
    }

    pub fn last_seen_of(&self, device: &str) -> Option<String> {
        self.statuses.get(device).map(|s| s.at.clone())
    }
}

pub enum LiveAction {
    Connected,
    Disconnected,
    Status { device: String, status: LiveStatus },
    RentalChanged,
}

impl Reducible for Live {
    type Action = LiveAction;
    fn reduce(self: Rc<Self>, action: LiveAction) -> Rc<Self> {
        let mut next = (*self).clone();
        match action {
            LiveAction::Connected => {
                next.connected = true;
                next.tried = true;
                next.epoch += 1;
            }
            LiveAction::Disconnected => {
                next.connected = false;
                next.tried = true;
            }
            LiveAction::Status { device, status } => {
                Rc::make_mut(&mut next.statuses).insert(device, status);
            }
            LiveAction::RentalChanged => next.rentals += 1,
        }
        Rc::new(next)
    }
}

#[derive(Properties, PartialEq)]
pub struct LiveProviderProps {
    /// Subscribe only while someone is signed in.
    pub enabled: bool,
    pub children: Html,
}

#[function_component(LiveProvider)]
pub fn live_provider(props: &LiveProviderProps) -> Html {
    let live = use_reducer(Live::default);
    {
        let dispatcher = live.dispatcher();
        use_effect_with(props.enabled, move |enabled| {
            let abort = enabled.then(|| {
                let (handle, registration) = AbortHandle::new_pair();
                wasm_bindgen_futures::spawn_local(async move {
                    let _ = Abortable::new(keep_subscribed(dispatcher), registration).await;
                });
                handle
            });
            move || {
                if let Some(handle) = abort {
                    handle.abort();
                }
            }
        });
    }
    html! {
        <ContextProvider<Live> context={(*live).clone()}>
            { props.children.clone() }
        </ContextProvider<Live>>
    }
}

const FIRST_RETRY_MS: u32 = 1_000;
const MAX_RETRY_MS: u32 = 30_000;

async fn keep_subscribed(dispatcher: UseReducerDispatcher<Live>) {
    let mut delay = FIRST_RETRY_MS;
    loop {
        let _ = subscribe_once(&dispatcher, &mut delay).await;
        dispatcher.dispatch(LiveAction::Disconnected);
        TimeoutFuture::new(delay).await;
        delay = (delay * 2).min(MAX_RETRY_MS);
    }
}

fn endpoint() -> Option<String> {
    let location = web_sys::window()?.location();
    let scheme = if location.protocol().ok()? == "https:" {
        "wss"
    } else {
        "ws"
    };
    Some(format!("{scheme}://{}/graphql", location.host().ok()?))
}

/// One connection: init, subscribe, then relay events until it ends. Resets the backoff once acknowledged.
async fn subscribe_once(dispatcher: &UseReducerDispatcher<Live>, delay: &mut u32) -> Option<()> {
    let mut ws = WebSocket::open_with_protocol(&endpoint()?, "graphql-transport-ws").ok()?;
    send(&mut ws, json!({"type": "connection_init", "payload": {}})).await?;
    loop {
        let message = next_json(&mut ws).await?;
        match message["type"].as_str() {
            Some("connection_ack") => break,
            Some("ping") => send(&mut ws, json!({"type": "pong"})).await?,
            _ => return None,
        }
    }
    let query = DeviceStatusChanged::build_query(device_status_changed::Variables {}).query;
    send(
        &mut ws,
        json!({"id": "status", "type": "subscribe", "payload": {"query": query, "variables": {}}}),
    )
    .await?;
    let query = RentalChanged::build_query(rental_changed::Variables {}).query;
    send(
        &mut ws,
        json!({"id": "rentals", "type": "subscribe", "payload": {"query": query, "variables": {}}}),
    )
    .await?;
    *delay = FIRST_RETRY_MS;
    dispatcher.dispatch(LiveAction::Connected);
    loop {
        let message = next_json(&mut ws).await?;
        match message["type"].as_str() {
            Some("next") if message["id"] == "rentals" => {
                dispatcher.dispatch(LiveAction::RentalChanged);
            }
            Some("next") => {
                let event = &message["payload"]["data"]["deviceStatusChanged"];
                if let (Some(device), Some(status)) =
                    (event["deviceId"].as_str(), event["status"].as_str())
                {
                    dispatcher.dispatch(LiveAction::Status {
                        device: device.to_owned(),
                        status: LiveStatus {
                            status: status.to_owned(),
                            at: event["at"].as_str().unwrap_or_default().to_owned(),
                        },
                    });
                }
            }
            Some("ping") => send(&mut ws, json!({"type": "pong"})).await?,
            // `error` / `complete`: the server ended the subscription (signed out, say).
            _ => return None,
        }
    }
}

async fn send(ws: &mut WebSocket, value: Value) -> Option<()> {
    ws.send(Message::Text(value.to_string())).await.ok()
}

async fn next_json(ws: &mut WebSocket) -> Option<Value> {
    match ws.next().await? {
        Ok(Message::Text(text)) => serde_json::from_str(&text).ok(),
        _ => None,
    }
}
