//! Rentals. A renter sees the login, the ready-to-paste commands and the time left; an owner sees the
//! rentals of their devices and what they earned.

use super::admin::RentalsTable;
use crate::api::{self, AllRentals, MyRentals, all_rentals, my_rentals};
use crate::load::{Load, failed, use_load};
use crate::session::{enum_str, use_session};
use crate::ui::{Code, CopyButton, Countdown, Empty, Loading, fmt_money, fmt_time};
use p2pvps_shared::Role;
use std::collections::BTreeMap;
use yew::prelude::*;

#[function_component(RentalsPage)]
pub fn rentals_page() -> Html {
    match use_session().role() {
        Some(Role::Renter) => html! { <RenterRentals /> },
        _ => html! { <OwnerRentals /> },
    }
}

#[function_component(RenterRentals)]
fn renter_rentals() -> Html {
    let (load, reload) = use_load((), |()| async {
        api::run::<MyRentals>(my_rentals::Variables {})
            .await
            .map(|d| d.rentals)
    });
    let rentals = match &*load {
        Load::Loading => return html! { <Loading /> },
        Load::Failed(e) => return failed(e, &reload),
        Load::Ready(r) => r,
    };
    let (live, past): (Vec<_>, Vec<_>) = rentals.iter().partition(|r| r.connection.is_some());
    html! {
        <section>
            <h1>{ "My rentals" }</h1>
            if rentals.is_empty() {
                <Empty title="No rentals yet">
                    <p>{ "When you rent a device, its login and the commands to reach it appear here." }</p>
                </Empty>
            }
            { for live.iter().map(|r| active_rental(r)) }
            if !past.is_empty() {
                <h2>{ "Earlier rentals" }</h2>
                <table class="list">
                    <thead><tr><th scope="col">{ "Device" }</th><th scope="col">{ "State" }</th>
                        <th scope="col">{ "Ended" }</th><th scope="col">{ "Price" }</th></tr></thead>
                    <tbody>{ for past.iter().map(|r| html! {
                        <tr>
                            <td data-label="Device">{ r.device.as_ref().map(|d| d.name.clone()).unwrap_or_default() }</td>
                            <td data-label="State">{ enum_str(&r.state).to_ascii_lowercase() }</td>
                            <td data-label="Ended">{ r.ends_at.as_deref().map(fmt_time).unwrap_or_default() }</td>
                            <td data-label="Price">{ fmt_money(r.price.minor, &r.price.currency) }</td>
                        </tr>
                    }) }</tbody>
                </table>
            }
        </section>
    }
}

fn active_rental(r: &my_rentals::MyRentalsRentals) -> Html {
    let Some(c) = &r.connection else {
        return html! {};
    };
    let name = r
        .device
        .as_ref()
        .map(|d| d.name.clone())
        .unwrap_or_default();
    html! {
        <article class="rental" data-rental={r.id.clone()}>
            <div class="heading">
                <h2>{ name }</h2>
                if let Some(end) = &r.ends_at { <Countdown until={end.clone()} /> }
            </div>
            <dl class="facts">
                <dt>{ "Login" }</dt><dd><code id="rental-login">{ &c.login }</code></dd>
                if let Some(login) = &r.login {
                    <dt>{ "Password (jump host)" }</dt>
                    <dd><code id="rental-secret">{ &login.secret }</code>{ " " }<CopyButton text={login.secret.clone()} /></dd>
                }
                <dt>{ "Ends" }</dt><dd>{ r.ends_at.as_deref().map(fmt_time).unwrap_or_default() }</dd>
                if let Some(url) = &c.web_url {
                    <dt>{ "Website" }</dt><dd><a id="rental-web" href={url.clone()}>{ url }</a></dd>
                }
            </dl>
            <Code id="port-command" label="By the device's port" text={c.port_command.clone()} />
            <Code id="jump-command" label="Through our server as a jump host (works behind any firewall)" text={c.jump_command.clone()} />
            <p class="hint">{ format!("The jump host asks for the password above; then the device asks for its own login. The device answers as {} on our SSH server.", c.subdomain) }</p>
        </article>
    }
}

#[function_component(OwnerRentals)]
fn owner_rentals() -> Html {
    let (load, reload) = use_load((), |()| async {
        api::run::<AllRentals>(all_rentals::Variables {})
            .await
            .map(|d| d.rentals)
    });
    let rentals = match &*load {
        Load::Loading => return html! { <Loading /> },
        Load::Failed(e) => return failed(e, &reload),
        Load::Ready(r) => r.clone(),
    };
    let mut earned: BTreeMap<String, i64> = BTreeMap::new();
    for r in &rentals {
        if matches!(enum_str(&r.state).as_str(), "ACTIVE" | "ENDING" | "ENDED") {
            *earned.entry(r.price.currency.clone()).or_default() += r.price.minor;
        }
    }
    html! {
        <section>
            <h1>{ "Rentals & earnings" }</h1>
            if rentals.is_empty() {
                <Empty title="No rentals yet">
                    <p>{ "Offer a device for rent (set a price on it) and keep it online: rentals of your devices appear here." }</p>
                </Empty>
            } else {
                <p id="earnings">{ "Earned: " }{ earned.iter().map(|(c, m)| fmt_money(*m, c)).collect::<Vec<_>>().join(", ") }</p>
                <RentalsTable rentals={rentals} />
            }
        </section>
    }
}
