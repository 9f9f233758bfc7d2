//! Rentals. A renter sees orders waiting for payment, the login, the ready-to-paste commands and the time
//! left; an owner sees orders to confirm, the rentals of their devices and what they earned (and, below,
//! any server they rent themselves).

use super::admin::{OrdersWaiting, RentalsTable};
use crate::api::{
    self, AllRentals, CancelOrder, MyRentals, RenewRental, all_rentals, cancel_order, my_rentals,
    renew_rental,
};
use crate::live::Live;
use crate::load::{Load, action, failed, use_load};
use crate::route::Route;
use crate::session::{enum_str, use_session};
use crate::ui::{Code, CopyButton, Countdown, Empty, ErrorBox, Loading, fmt_money, fmt_time};
use p2pvps_shared::Role;
use yew::prelude::*;
use yew_router::prelude::*;

#[function_component(RentalsPage)]
pub fn rentals_page() -> Html {
    match use_session().role() {
        Some(Role::Renter) => html! { <RenterRentals compact={false} /> },
        _ => html! { <><OwnerRentals /><RenterRentals compact={true} /></> },
    }
}

#[derive(Properties, PartialEq)]
struct RenterProps {
    /// Under an owner's page: nothing when empty, a smaller heading.
    compact: bool,
}

#[function_component(RenterRentals)]
fn renter_rentals(props: &RenterProps) -> Html {
    let live = use_context::<Live>().unwrap_or_default();
    let (load, reload) = use_load((live.epoch, live.rentals), |_| async {
        api::run::<MyRentals>(my_rentals::Variables {})
            .await
            .map(|d| d.rentals)
    });
    let rentals = match &*load {
        Load::Loading => return html! { <Loading /> },
        Load::Failed(e) => return failed(e, &reload),
        Load::Ready(r) => r,
    };
    if props.compact && rentals.is_empty() {
        return html! {};
    }
    let (waiting, rest): (Vec<_>, Vec<_>) = rentals
        .iter()
        .partition(|r| enum_str(&r.state) == "ORDERED");
    // Running rentals, including those whose access the device is still setting up.
    let (current, past): (Vec<_>, Vec<_>) = rest
        .into_iter()
        .partition(|r| r.connection.is_some() || enum_str(&r.state) == "ACTIVE");
    html! {
        <section>
            if props.compact { <h2>{ "Servers I rent" }</h2> } else { <h1>{ "My rentals" }</h1> }
            if rentals.is_empty() {
                <Empty title="No rentals yet">
                    <p>{ "When you rent a device, its login and the commands to reach it appear here. " }
                       <Link<Route> to={Route::Store}>{ "See what is for rent" }</Link<Route>></p>
                </Empty>
            }
            { for waiting.iter().map(|r| html! { <WaitingOrder rental={(*r).clone()} reload={reload.clone()} /> }) }
            { for current.iter().map(|r| active_rental(r, &reload)) }
            if !past.is_empty() {
                <h2>{ "Earlier rentals" }</h2>
                <table class="list">
                    <thead><tr><th scope="col">{ "Device" }</th><th scope="col">{ "State" }</th>
                        <th scope="col">{ "Ended" }</th><th scope="col">{ "Price" }</th></tr></thead>
                    <tbody>{ for past.iter().map(|r| html! {
                        <tr>
                            <td data-label="Device">{ &r.device_name }</td>
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

fn active_rental(r: &my_rentals::MyRentalsRentals, reload: &Callback<()>) -> Html {
    let name = r.device_name.clone();
    // The device's agent made the renter's account (with its own password, not the jump host's).
    let provisioned = r.provisioning.is_some();
    let Some(c) = &r.connection else {
        // The device's agent has not made the login yet (or could not): no half-working access shown.
        let failed = r
            .provisioning
            .as_ref()
            .is_some_and(|p| p.start.as_ref().is_some_and(|s| enum_str(s) == "FAILED"));
        return html! {
            <article class="rental" data-rental={r.id.clone()}>
                <div class="heading"><h2>{ name }</h2></div>
                if failed {
                    <p class="error" id="provisioning">{ "Provisioning failed: the device could not set up your login. Its owner has been told and can run it again." }</p>
                } else {
                    <p class="hint" id="provisioning">{ "The device is setting up your login; it appears here in a moment." }</p>
                }
            </article>
        };
    };
    html! {
        <article class="rental" data-rental={r.id.clone()}>
            <div class="heading">
                <h2>{ name }</h2>
                if let Some(end) = &r.ends_at { <Countdown until={end.clone()} /> }
            </div>
            <dl class="facts">
                <dt>{ "Login" }</dt><dd><code id="rental-login">{ &c.login }</code></dd>
                if let Some(login) = &r.login {
                    <dt>{ "Jump host password" }</dt>
                    <dd><code id="rental-secret">{ &login.secret }</code>{ " " }<CopyButton text={login.secret.clone()} /></dd>
                    if let Some(password) = &login.device_password {
                        <dt>{ "Device password" }</dt>
                        <dd><code id="rental-device-password">{ password }</code>{ " " }<CopyButton text={password.clone()} /></dd>
                    }
                }
                <dt>{ "Ends" }</dt><dd>{ r.ends_at.as_deref().map(fmt_time).unwrap_or_default() }</dd>
                if let Some(url) = &c.web_url {
                    <dt>{ "Website" }</dt><dd><a id="rental-web" href={url.clone()}>{ url }</a></dd>
                }
            </dl>
            <Code id="port-command" label="By the device's port" text={c.port_command.clone()} />
            <Code id="jump-command" label="Through our server as a jump host (works behind any firewall)" text={c.jump_command.clone()} />
            <p class="hint">{
                if provisioned {
                    format!("The jump host asks for its password, then the device for the device password (the device's owner never sees the jump host's). The device answers as {} on our SSH server.", c.subdomain)
                } else {
                    format!("The jump host asks for the password above; then the device asks for its own login. The device answers as {} on our SSH server.", c.subdomain)
                }
            }</p>
            <Renewal rental={r.id.clone()} waiting={r.payment.as_ref().filter(|p| p.state == "pending").map(|p| p.instructions.clone())} reload={reload.clone()} />
        </article>
    }
}

#[derive(Properties, PartialEq)]
struct RenewalProps {
    rental: String,
    /// The instructions of a renewal waiting for payment, if one is.
    waiting: Option<String>,
    reload: Callback<()>,
}

/// Renews a running rental for one more period, or shows (and cancels) the renewal waiting for payment.
#[function_component(Renewal)]
fn renewal(props: &RenewalProps) -> Html {
    let error = use_state(|| None::<api::ApiError>);
    let act = {
        let (rental, renew) = (props.rental.clone(), props.waiting.is_none());
        action(&error, &props.reload, move || {
            let rental = rental.clone();
            async move {
                if renew {
                    api::send::<RenewRental>(renew_rental::Variables { rental }).await
                } else {
                    api::send::<CancelOrder>(cancel_order::Variables { rental }).await
                }
            }
        })
    };
    html! {
        <div class="renewal">
            if let Some(e) = &*error { <ErrorBox error={e.clone()} /> }
            if let Some(instructions) = &props.waiting {
                <p class="instructions"><strong>{ "Renewal waiting for payment. " }</strong>{ instructions }</p>
                <button type="button" class="secondary" onclick={act}>{ "Cancel renewal" }</button>
            } else {
                <button type="button" class="renew" onclick={act}>{ "Renew for another period" }</button>
            }
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct WaitingProps {
    rental: my_rentals::MyRentalsRentals,
    reload: Callback<()>,
}

/// An order of the renter's waiting for payment: what to pay, how, and a way to cancel.
#[function_component(WaitingOrder)]
fn waiting_order(props: &WaitingProps) -> Html {
    let error = use_state(|| None::<api::ApiError>);
    let r = &props.rental;
    let cancel = {
        let rental = r.id.clone();
        action(&error, &props.reload, move || {
            api::send::<CancelOrder>(cancel_order::Variables {
                rental: rental.clone(),
            })
        })
    };
    html! {
        <article class="rental order" data-order={r.id.clone()}>
            <div class="heading">
                <h2>{ &r.device_name }</h2>
                <span class="badge">{ "waiting for payment" }</span>
            </div>
            <p><strong>{ fmt_money(r.price.minor, &r.price.currency) }</strong></p>
            if let Some(by) = &r.pay_by {
                <p class="pay-by">{ format!("Pay by {}; an order still unpaid then is cancelled and the device offered to others.", fmt_time(by)) }</p>
            }
            if let Some(p) = &r.payment {
                <p class="instructions">{ &p.instructions }</p>
                if let Some(url) = &p.checkout_url { <p><a href={url.clone()}>{ "Pay now" }</a></p> }
            }
            if let Some(e) = &*error { <ErrorBox error={e.clone()} /> }
            <button type="button" class="secondary cancel-order" onclick={cancel}>{ "Cancel order" }</button>
        </article>
    }
}

#[function_component(OwnerRentals)]
fn owner_rentals() -> Html {
    let live = use_context::<Live>().unwrap_or_default();
    let (load, reload) = use_load((live.epoch, live.rentals), |_| async {
        api::run::<AllRentals>(all_rentals::Variables {}).await
    });
    let data = match &*load {
        Load::Loading => return html! { <Loading /> },
        Load::Failed(e) => return failed(e, &reload),
        Load::Ready(d) => d.clone(),
    };
    let earned = crate::ui::money_list(
        data.me
            .iter()
            .flat_map(|me| me.earnings.iter().map(|m| (m.minor, m.currency.as_str()))),
    );
    html! {
        <section>
            <h1>{ "Rentals & earnings" }</h1>
            <p id="earnings">{ "Earned (after the platform's fee and refunds): " }{ earned }</p>
            <OrdersWaiting orders={data.orders.clone()} reload={reload.clone()} />
            if data.rentals.is_empty() {
                <Empty title="No rentals yet">
                    <p>{ "Offer a device for rent (set a price on it) and keep it online: rentals of your devices appear here." }</p>
                </Empty>
            } else {
                <RentalsTable rentals={data.rentals} />
            }
        </section>
    }
}
