//! The storefront (anyone browses the devices for rent; a signed-in user orders one) and the claim page
//! a marketplace buyer reaches from their delivery link.

use crate::api::{self, ClaimRental, Offers, OrderRental, claim_rental, offers, order_rental};
use crate::load::{Load, failed, use_load};
use crate::route::Route;
use crate::session::use_session;
use crate::ui::{Empty, ErrorBox, Loading, fmt_money};
use yew::prelude::*;
use yew_router::prelude::*;

#[function_component(StorePage)]
pub fn store_page() -> Html {
    let (load, reload) = use_load((), |()| async {
        api::run::<Offers>(offers::Variables {})
            .await
            .map(|d| d.offers)
    });
    let error = use_state(|| None::<api::ApiError>);
    let busy = use_state(|| false);
    let session = use_session();
    let navigator = use_navigator();
    let offers = match &*load {
        Load::Loading => return html! { <Loading /> },
        Load::Failed(e) => return failed(e, &reload),
        Load::Ready(o) => o,
    };
    let rent = |id: String| {
        let (error, busy, navigator) = (error.clone(), busy.clone(), navigator.clone());
        let signed_in = session.user.is_some();
        Callback::from(move |_| {
            let Some(n) = navigator.clone() else { return };
            if !signed_in {
                crate::route::remember(Some(Route::Store));
                n.push(&Route::LogIn);
                return;
            }
            let (error, busy, device) = (error.clone(), busy.clone(), id.clone());
            busy.set(true);
            wasm_bindgen_futures::spawn_local(async move {
                match api::send::<OrderRental>(order_rental::Variables { offer: device }).await {
                    Ok(_) => n.push(&Route::Rentals),
                    Err(e) => {
                        error.set(Some(e));
                        busy.set(false);
                    }
                }
            });
        })
    };
    html! {
        <section>
            <h1>{ "Rent a server" }</h1>
            <p class="hint">{ "Small computers kept online by their owners. You get SSH access (by port, or through our server as a jump host) for the rental period; pay as the order says and it starts once the payment is confirmed." }</p>
            if let Some(e) = &*error { <ErrorBox error={e.clone()} /> }
            if offers.is_empty() {
                <Empty title="Nothing for rent right now">
                    <p>{ "Every device is let or offline. Look again later." }</p>
                </Empty>
            }
            <ul class="offers">{ for offers.iter().map(|o| {
                let h = &o.hardware;
                let facts: Vec<String> = [
                    h.cpu_model.clone(),
                    h.cpu_cores.map(|c| format!("{c} cores")),
                    h.memory_mb.map(|m| tenths((m * 10 + 512) / 1024, " GB RAM")),
                    h.disk_gb.map(|d| format!("{d} GB disk")),
                    h.arch.clone(),
                ].into_iter().flatten().collect();
                html! {
                    <li class="offer" data-offer={o.id.clone()}>
                        <h2>{ &o.name }</h2>
                        if !o.description.is_empty() { <p>{ &o.description }</p> }
                        <p class="facts">{ if facts.is_empty() { "hardware not stated".to_owned() } else { facts.join(" · ") } }</p>
                        <p class="uptime">{ "online " }{ tenths((o.uptime.online_fraction * 1000.0).round() as i64, " % of the last 7 days") }</p>
                        <p class="price">
                            <strong>{ o.price.as_ref().map(|p| fmt_money(p.minor, &p.currency)).unwrap_or_default() }</strong>
                            { format!(" for {} h", o.rental_hours) }
                        </p>
                        <button type="button" class="rent" disabled={*busy} onclick={rent(o.id.clone())}>{ "Rent" }</button>
                    </li>
                }
            }) }</ul>
        </section>
    }
}

/// `123` tenths as `12.3` and a unit (integer formatting: no float formatting code in the wasm).
fn tenths(n: i64, unit: &str) -> String {
    format!("{}.{}{unit}", n / 10, n % 10)
}

#[derive(Properties, PartialEq)]
pub struct ClaimProps {
    pub token: String,
}

/// A marketplace buyer makes the rental theirs with the token from the delivery note.
#[function_component(ClaimPage)]
pub fn claim_page(props: &ClaimProps) -> Html {
    let error = use_state(|| None::<api::ApiError>);
    let navigator = use_navigator();
    let claim = {
        let (error, token) = (error.clone(), props.token.clone());
        Callback::from(move |_| {
            let (error, token, navigator) = (error.clone(), token.clone(), navigator.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::send::<ClaimRental>(claim_rental::Variables { token }).await {
                    Ok(_) => {
                        if let Some(n) = navigator {
                            n.push(&Route::Rentals);
                        }
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
        })
    };
    html! {
        <section>
            <h1>{ "Claim your rental" }</h1>
            <p>{ "You bought a rental on a marketplace. Claim it to see its login and the commands to reach the device. The link works once." }</p>
            if let Some(e) = &*error { <ErrorBox error={e.clone()} /> }
            <button type="button" id="claim" onclick={claim}>{ "Claim it" }</button>
        </section>
    }
}
