//! One device: live status, facts, uptime over 24 h and 7 d, how to connect it, earnings, and the
//! credential rotation and deletion an owner needs.

use super::add_device::{ConnectGuide, server_from};
use super::ssh_keys::{Key, SshKeys};
use crate::api::{
    self, ApiError, DeleteDevice, Device, RotateCredential, SetWebPublishing, delete_device,
    device, rotate_credential, set_web_publishing,
};
use crate::chart::{Span, UptimeChart};
use crate::live::Live;
use crate::load::{Load, failed, use_load};
use crate::route::Route;
use crate::session::enum_str;
use crate::ui::{
    Code, CopyButton, ErrorBox, Loading, RentedBadge, StatusBadge, fmt_money, fmt_time,
};
use std::collections::BTreeMap;
use yew::prelude::*;
use yew_router::prelude::*;

#[derive(Properties, PartialEq)]
pub struct DeviceProps {
    pub id: String,
}

macro_rules! spans {
    ($u:expr) => {
        $u.spans
            .iter()
            .map(|s| Span {
                status: enum_str(&s.status),
                from: s.from.clone(),
                to: s.to.clone(),
            })
            .collect::<Vec<_>>()
    };
}

#[function_component(DevicePage)]
pub fn device_page(props: &DeviceProps) -> Html {
    let live = use_context::<Live>().unwrap_or_default();
    let navigator = use_navigator();
    let action_error = use_state(|| None::<ApiError>);
    let new_credential = use_state(|| None::<String>);
    let confirm_delete = use_state(|| false);
    // A status change of this device refreshes the uptime charts too.
    let live_status = live.statuses.get(&props.id).cloned();
    let (load, reload) = use_load(
        (props.id.clone(), live.epoch, live_status),
        |(id, ..)| async move {
            api::run::<Device>(device::Variables { id })
                .await
                .map(Box::new)
        },
    );
    let data = match &*load {
        Load::Loading => return html! { <Loading /> },
        Load::Failed(e) => {
            if e.code() == "NOT_FOUND" {
                return html! {
                    <section class="empty">
                        <h1>{ "No such device" }</h1>
                        <p>{ "It was deleted, or it is not yours." }</p>
                        <Link<Route> to={Route::Devices}>{ "Back to my devices" }</Link<Route>>
                    </section>
                };
            }
            return failed(e, &reload);
        }
        Load::Ready(d) => d.clone(),
    };
    let d = &data.device;
    let status = live.status_of(&d.id, &enum_str(&d.status));
    let seen = live.last_seen_of(&d.id).or_else(|| d.last_seen.clone());
    let rotate = {
        let (id, new_credential, action_error) =
            (d.id.clone(), new_credential.clone(), action_error.clone());
        Callback::from(move |_| {
            let (id, new_credential, action_error) =
                (id.clone(), new_credential.clone(), action_error.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::run::<RotateCredential>(rotate_credential::Variables { id }).await {
                    Ok(r) => {
                        action_error.set(None);
                        new_credential.set(Some(r.rotate_device_credential.credential));
                    }
                    Err(e) => action_error.set(Some(e)),
                }
            });
        })
    };
    let delete = {
        let (id, action_error, navigator) = (d.id.clone(), action_error.clone(), navigator.clone());
        Callback::from(move |_| {
            let (id, action_error, navigator) =
                (id.clone(), action_error.clone(), navigator.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::send::<DeleteDevice>(delete_device::Variables { id }).await {
                    Ok(_) => {
                        if let Some(n) = navigator {
                            n.push(&Route::Devices);
                        }
                    }
                    Err(e) => action_error.set(Some(e)),
                }
            });
        })
    };
    let toggle_web = {
        let (id, on, action_error, reload) = (
            d.id.clone(),
            !d.web_publishing,
            action_error.clone(),
            reload.clone(),
        );
        Callback::from(move |_| {
            let (id, action_error, reload) = (id.clone(), action_error.clone(), reload.clone());
            wasm_bindgen_futures::spawn_local(async move {
                let vars = set_web_publishing::Variables { id, on };
                match api::send::<SetWebPublishing>(vars).await {
                    Ok(_) => reload.emit(()),
                    Err(e) => action_error.set(Some(e)),
                }
            });
        })
    };
    let ask_delete = {
        let confirm = confirm_delete.clone();
        Callback::from(move |_| confirm.set(!*confirm))
    };
    // Earnings: rentals of this device that were paid for, per currency.
    let mut earned: BTreeMap<String, i64> = BTreeMap::new();
    for r in data
        .rentals
        .iter()
        .filter(|r| r.device.as_ref().is_some_and(|x| x.id == d.id))
    {
        if matches!(enum_str(&r.state).as_str(), "ACTIVE" | "ENDING" | "ENDED") {
            *earned.entry(r.price.currency.clone()).or_default() += r.price.minor;
        }
    }
    let keys: Vec<Key> = d
        .ssh_keys
        .iter()
        .map(|k| Key {
            fingerprint: k.fingerprint.clone(),
            public_key: k.public_key.clone(),
            created_at: k.created_at.clone(),
        })
        .collect();
    let hw = &d.hardware;
    let facts: Vec<(&str, String)> = [
        ("CPU", hw.cpu_model.clone()),
        ("Cores", hw.cpu_cores.map(|c| c.to_string())),
        ("Memory", hw.memory_mb.map(|m| format!("{m} MB"))),
        ("Disk", hw.disk_gb.map(|g| format!("{g} GB"))),
        ("Architecture", hw.arch.clone()),
    ]
    .into_iter()
    .filter_map(|(k, v)| Some((k, v?)))
    .collect();
    html! {
        <section>
            <div class="heading">
                <h1>{ &d.name }</h1>
                <StatusBadge status={status} />
                if d.rented { <RentedBadge /> }
            </div>
            if let Some(e) = &*action_error { <ErrorBox error={e.clone()} /> }
            if let Some(c) = &*new_credential {
                <div class="secret" role="status">
                    <h2>{ "New credential" }</h2>
                    <p><strong>{ "Shown only now." }</strong>{ " The old one no longer works: update the device." }</p>
                    <pre id="credential">{ c }</pre>
                    <CopyButton text={c.clone()} label="Copy credential" />
                </div>
            }
            <dl class="facts">
                <dt>{ "Last seen" }</dt><dd>{ seen.as_deref().map(fmt_time).unwrap_or_else(|| "never".to_owned()) }</dd>
                <dt>{ "Public port" }</dt><dd>{ d.tunnel_port }</dd>
                <dt>{ "Subdomain" }</dt><dd><code>{ &d.subdomain }</code></dd>
                <dt>{ "Device id" }</dt><dd><code>{ &d.id }</code></dd>
                <dt>{ "Price" }</dt><dd>{ d.price.as_ref().map(|p| format!("{} per {} h", fmt_money(p.minor, &p.currency), d.rental_hours)).unwrap_or_else(|| "not set".to_owned()) }</dd>
                <dt>{ "For rent" }</dt><dd>{ if d.for_rent { "yes" } else { "no" } }</dd>
                { for facts.iter().map(|(k, v)| html! { <><dt>{ *k }</dt><dd>{ v }</dd></> }) }
            </dl>
            <h2>{ "Uptime" }</h2>
            <UptimeChart id="uptime-day" title="Last 24 hours" spans={spans!(d.day)} online_fraction={d.day.online_fraction} />
            <UptimeChart id="uptime-week" title="Last 7 days" spans={spans!(d.week)} online_fraction={d.week.online_fraction} />
            <h2>{ "Earnings" }</h2>
            if earned.is_empty() {
                <p>{ "No rentals yet. Devices that are online and offered for rent are listed for renters." }</p>
            } else {
                <ul id="earnings">{ for earned.iter().map(|(c, m)| html! { <li>{ fmt_money(*m, c) }</li> }) }</ul>
            }
            <h2>{ "Connect it" }</h2>
            <ConnectGuide device_id={d.id.clone()} device_port={u16::try_from(d.tunnel_port).unwrap_or_default()}
                server={data.tunnel_server.as_ref().map(|s| server_from!(s))} />
            <h2>{ "Website" }</h2>
            <label class="check">
                <input type="checkbox" id="web-publishing" checked={d.web_publishing} onchange={toggle_web} />
                { " Publish the device's web server at its subdomain (public, like any tunnel service)" }
            </label>
            if let (Some(url), true) = (&d.web_url, d.web_publishing) {
                <p>{ "Address: " }<a id="web-url" href={url.clone()}>{ url }</a></p>
                if let Some(s) = &data.tunnel_server {
                    <Code id="web-ssh" label="Publish local port 8080 with OpenSSH"
                        text={format!("ssh -N -R {}:80:127.0.0.1:8080 -p {} {}@{}", d.subdomain, s.port, d.id, s.host)} />
                }
                <Code id="web-lt" label="or with the localtunnel client (npm install -g localtunnel)"
                    text={format!("lt --host {} --subdomain {} --port 8080",
                        url.replacen("://", &format!("://{}:CREDENTIAL@", d.id), 1).replacen(&format!("@{}.", d.subdomain), "@", 1),
                        d.subdomain)} />
            } else if !d.web_publishing {
                <p id="web-state">{ "Not published: its subdomain answers \"No such site\"." }</p>
            } else {
                <p>{ "This server runs no web gateway." }</p>
            }
            <h2>{ "SSH keys" }</h2>
            <SshKeys device_id={d.id.clone()} keys={keys} changed={reload.clone()} />
            <h2>{ "Manage" }</h2>
            <div class="actions">
                <button type="button" class="secondary" id="rotate" onclick={rotate}>{ "Rotate credential" }</button>
                if d.rented {
                    <button type="button" class="danger" disabled=true aria-describedby="delete-reason">{ "Delete device" }</button>
                    <small id="delete-reason">{ "A rented device cannot be deleted: wait for the rental to end." }</small>
                } else if *confirm_delete {
                    <span role="alert">{ "Delete it for good? Its port and subdomain are released. " }</span>
                    <button type="button" class="danger" id="delete-confirm" onclick={delete}>{ "Yes, delete" }</button>
                    <button type="button" class="secondary" onclick={ask_delete}>{ "Keep it" }</button>
                } else {
                    <button type="button" class="danger" id="delete" onclick={ask_delete}>{ "Delete device" }</button>
                }
            </div>
        </section>
    }
}
