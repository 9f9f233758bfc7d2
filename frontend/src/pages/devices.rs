//! The device list: an owner's own devices, or every device for an admin, with live status badges.

use crate::api::{self, ApiError, Devices, devices};
use crate::live::Live;
use crate::load::{Load, failed, use_load};
use crate::route::Route;
use crate::session::enum_str;
use crate::ui::{Empty, Loading, RentedBadge, StatusBadge, fmt_time};
use yew::prelude::*;
use yew_router::prelude::*;

type Node = devices::DevicesDevicesNodes;

/// One page of the list: its devices and the cursor of the next page, if any.
#[derive(Clone, PartialEq)]
struct Page {
    nodes: Vec<Node>,
    next: Option<String>,
}

async fn fetch(after: Option<String>) -> Result<Page, ApiError> {
    let d = api::run::<Devices>(devices::Variables { after }).await?;
    let info = d.devices.page_info;
    Ok(Page {
        nodes: d.devices.nodes,
        next: info.has_next_page.then_some(info.end_cursor).flatten(),
    })
}

#[derive(Properties, PartialEq)]
pub struct DevicesProps {
    /// Every device, with its owner (the admin view).
    pub all: bool,
}

#[function_component(DevicesPage)]
pub fn devices_page(props: &DevicesProps) -> Html {
    let live = use_context::<Live>().unwrap_or_default();
    // Refetch on every (re)connection of the live feed: changes may have been missed meanwhile.
    let (load, reload) = use_load(live.epoch, |_| fetch(None));
    let more = {
        let load = load.clone();
        Callback::from(move |_| {
            let Load::Ready(Page {
                nodes,
                next: Some(after),
            }) = (*load).clone()
            else {
                return;
            };
            let load = load.clone();
            wasm_bindgen_futures::spawn_local(async move {
                if let Ok(page) = fetch(Some(after)).await {
                    let mut all = nodes;
                    all.extend(page.nodes);
                    load.set(Load::Ready(Page {
                        nodes: all,
                        next: page.next,
                    }));
                }
            });
        })
    };
    let title = if props.all {
        "All devices"
    } else {
        "My devices"
    };
    let body = match &*load {
        Load::Loading => html! { <Loading /> },
        Load::Failed(e) => failed(e, &reload),
        Load::Ready(Page { nodes, .. }) if nodes.is_empty() => {
            if props.all {
                html! { <Empty title="No devices yet">
                    <p>{ "Owners register their devices from their dashboard; they will be listed here." }</p>
                </Empty> }
            } else {
                html! { <Empty title="No devices yet">
                    <p>{ "Register a Raspberry Pi or a spare VM: it keeps an SSH tunnel to this server and renters reach it through us." }</p>
                    <Link<Route> to={Route::AddDevice} classes="button">{ "Add your first device" }</Link<Route>>
                </Empty> }
            }
        }
        Load::Ready(Page { nodes, next }) => html! {
            <>
            <table class="list" id="devices">
                <thead><tr>
                    <th scope="col">{ "Device" }</th>
                    <th scope="col">{ "Status" }</th>
                    <th scope="col">{ "Last seen" }</th>
                    <th scope="col">{ "Port" }</th>
                    <th scope="col">{ "Subdomain" }</th>
                    if props.all { <th scope="col">{ "Owner" }</th> }
                </tr></thead>
                <tbody>
                { for nodes.iter().map(|d| row(d, &live, props.all)) }
                </tbody>
            </table>
            if next.is_some() { <button type="button" class="secondary" onclick={more}>{ "Load more" }</button> }
            </>
        },
    };
    html! {
        <section>
            <div class="heading">
                <h1>{ title }</h1>
                if !props.all { <Link<Route> to={Route::AddDevice} classes="button">{ "Add device" }</Link<Route>> }
            </div>
            { body }
        </section>
    }
}

fn row(d: &Node, live: &Live, all: bool) -> Html {
    let status = live.status_of(&d.id, &enum_str(&d.status));
    let seen = live.last_seen_of(&d.id).or_else(|| d.last_seen.clone());
    html! {
        <tr data-device={d.id.clone()}>
            <td data-label="Device"><Link<Route> to={Route::Device { id: d.id.clone() }}>{ &d.name }</Link<Route>></td>
            <td data-label="Status"><StatusBadge status={status} />{ " " }if d.rented { <RentedBadge /> }</td>
            <td data-label="Last seen">{ seen.as_deref().map(fmt_time).unwrap_or_else(|| "never".to_owned()) }</td>
            <td data-label="Port">{ d.tunnel_port }</td>
            <td data-label="Subdomain"><code>{ &d.subdomain }</code></td>
            if all { <td data-label="Owner">{ &d.owner.email }</td> }
        </tr>
    }
}
