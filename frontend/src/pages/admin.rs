//! Admin pages: users (role, disable), every rental, and the audit log. Every device is the device list
//! with `all`.

use crate::api::{
    self, AllRentals, ApiError, AuditLog, CancelOrder, ConfirmPayment, DisableUser,
    PlatformEarnings, RetryProvisioning, SetUserRole, Users, all_rentals, audit_log, cancel_order,
    confirm_payment, disable_user, platform_earnings, retry_provisioning, set_user_role, users,
};
use crate::load::{Load, action, failed, use_load};
use crate::route::Route;
use crate::session::{enum_str, use_session};
use crate::ui::{Empty, ErrorBox, Loading, fmt_money, fmt_time};
use yew::prelude::*;
use yew_router::prelude::*;

#[function_component(UsersPage)]
pub fn users_page() -> Html {
    let me = use_session().user.map(|u| u.id).unwrap_or_default();
    let (load, reload) = use_load((), |()| async {
        api::run::<Users>(users::Variables { after: None })
            .await
            .map(|d| d.users.nodes)
    });
    let error = use_state(|| None::<ApiError>);
    let list = match &*load {
        Load::Loading => return html! { <Loading /> },
        Load::Failed(e) => return failed(e, &reload),
        Load::Ready(l) => l,
    };
    let set_role = |id: String| {
        let (reload, error) = (reload.clone(), error.clone());
        Callback::from(move |e: Event| {
            let Some(select) = e.target_dyn_into::<web_sys::HtmlSelectElement>() else {
                return;
            };
            let role = match select.value().as_str() {
                "ADMIN" => set_user_role::Role::ADMIN,
                "RENTER" => set_user_role::Role::RENTER,
                _ => set_user_role::Role::OWNER,
            };
            let (reload, error, id) = (reload.clone(), error.clone(), id.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::send::<SetUserRole>(set_user_role::Variables { id, role }).await {
                    Ok(_) => error.set(None),
                    Err(e) => error.set(Some(e)),
                }
                reload.emit(());
            });
        })
    };
    let toggle = |id: String, disabled: bool| {
        let (reload, error) = (reload.clone(), error.clone());
        Callback::from(move |_| {
            let (reload, error, id) = (reload.clone(), error.clone(), id.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::send::<DisableUser>(disable_user::Variables {
                    id,
                    disabled: !disabled,
                })
                .await
                {
                    Ok(_) => error.set(None),
                    Err(e) => error.set(Some(e)),
                }
                reload.emit(());
            });
        })
    };
    html! {
        <section>
            <h1>{ "Users" }</h1>
            if let Some(e) = &*error { <ErrorBox error={e.clone()} /> }
            <table class="list" id="users">
                <thead><tr><th scope="col">{ "E-mail" }</th><th scope="col">{ "Role" }</th>
                    <th scope="col">{ "Since" }</th><th scope="col">{ "Access" }</th></tr></thead>
                <tbody>{ for list.iter().map(|u| {
                    let role = enum_str(&u.role);
                    let own = u.id == me;
                    html! {
                        <tr data-user={u.id.clone()}>
                            <td data-label="E-mail">{ &u.email }</td>
                            <td data-label="Role">
                                <label class="visually-hidden" for={format!("role-{}", u.id)}>{ format!("Role of {}", u.email) }</label>
                                <select id={format!("role-{}", u.id)} disabled={own} onchange={set_role(u.id.clone())}>
                                    { for ["OWNER", "RENTER", "ADMIN"].iter().map(|r| html! {
                                        <option value={*r} selected={role == *r}>{ r.to_ascii_lowercase() }</option>
                                    }) }
                                </select>
                            </td>
                            <td data-label="Since">{ fmt_time(&u.created_at) }</td>
                            <td data-label="Access">
                                if own { { "you" } } else {
                                    <button type="button" class={if u.disabled { "secondary" } else { "danger" }}
                                        onclick={toggle(u.id.clone(), u.disabled)}>
                                        { if u.disabled { "Enable" } else { "Disable" } }
                                    </button>
                                }
                            </td>
                        </tr>
                    }
                }) }</tbody>
            </table>
        </section>
    }
}

/// The device hooks' state, if they are not done: "setting up" / "cleaning up" while the agent works,
/// "provisioning failed" / "clean-up failed" with the hook's own words and a button to run it again.
fn provisioning(r: &all_rentals::AllRentalsRentals) -> Html {
    let Some(p) = &r.provisioning else {
        return html! {};
    };
    let status = |s: &Option<all_rentals::HookStatus>| s.as_ref().map(enum_str);
    let (text, failed) = match (status(&p.start).as_deref(), status(&p.end).as_deref()) {
        (_, Some("FAILED")) => ("clean-up failed", true),
        (_, Some("PENDING")) => ("cleaning up", false),
        (Some("FAILED"), _) if enum_str(&r.state) == "ACTIVE" => ("provisioning failed", true),
        (Some("PENDING"), _) if enum_str(&r.state) == "ACTIVE" => ("setting up", false),
        _ => return html! {},
    };
    html! {
        <div class="provisioning">
            <span class={if failed { "badge failed" } else { "badge rented" }}>{ text }</span>
            if failed {
                <small class="error hook-message">{ p.message.clone().unwrap_or_default() }</small>
                <RetryButton rental={r.id.clone()} />
            }
        </div>
    }
}

#[derive(Properties, PartialEq)]
struct RetryProps {
    rental: String,
}

/// Runs a failed hook again; the list follows by itself (the change comes back live).
#[function_component(RetryButton)]
fn retry_button(props: &RetryProps) -> Html {
    let error = use_state(|| None::<ApiError>);
    let retry = {
        let rental = props.rental.clone();
        action(&error, &Callback::noop(), move || {
            let rental = rental.clone();
            async move { api::send::<RetryProvisioning>(retry_provisioning::Variables { rental }).await }
        })
    };
    html! {
        <>
            if let Some(e) = &*error { <ErrorBox error={e.clone()} /> }
            <button class="retry-provisioning" onclick={retry}>{ "Run the hook again" }</button>
        </>
    }
}

#[derive(Properties, PartialEq)]
pub struct RentalsTableProps {
    pub rentals: Vec<all_rentals::AllRentalsRentals>,
}

#[function_component(RentalsTable)]
pub fn rentals_table(props: &RentalsTableProps) -> Html {
    html! {
        <table class="list" id="rentals">
            <thead><tr><th scope="col">{ "Device" }</th><th scope="col">{ "State" }</th><th scope="col">{ "From" }</th>
                <th scope="col">{ "Until" }</th><th scope="col">{ "Price" }</th><th scope="col">{ "Order" }</th></tr></thead>
            <tbody>{ for props.rentals.iter().map(|r| html! {
                <tr data-rental={r.id.clone()}>
                    <td data-label="Device">{
                        match &r.device {
                            Some(d) => html! { <Link<Route> to={Route::Device { id: d.id.clone() }}>{ &d.name }</Link<Route>> },
                            None => html! { "deleted" },
                        }
                    }</td>
                    <td data-label="State">{ enum_str(&r.state).to_ascii_lowercase() }{ provisioning(r) }</td>
                    <td data-label="From">{ r.starts_at.as_deref().map(fmt_time).unwrap_or_default() }</td>
                    <td data-label="Until">{ r.ends_at.as_deref().map(fmt_time).unwrap_or_default() }</td>
                    <td data-label="Price">{ fmt_money(r.price.minor, &r.price.currency) }</td>
                    <td data-label="Order">{ format!("{} {}", r.marketplace, r.order_ref) }</td>
                </tr>
            }) }</tbody>
        </table>
    }
}

#[derive(Properties, PartialEq)]
pub struct OrdersProps {
    pub orders: Vec<all_rentals::AllRentalsOrders>,
    pub reload: Callback<()>,
}

/// Storefront orders waiting for payment, for the device's owner or an admin to confirm or cancel.
#[function_component(OrdersWaiting)]
pub fn orders_waiting(props: &OrdersProps) -> Html {
    let error = use_state(|| None::<ApiError>);
    if props.orders.is_empty() {
        return html! {};
    }
    let act = |rental: String, confirm: bool| {
        action(&error, &props.reload, move || {
            let rental = rental.clone();
            async move {
                if confirm {
                    api::send::<ConfirmPayment>(confirm_payment::Variables { rental }).await
                } else {
                    api::send::<CancelOrder>(cancel_order::Variables { rental }).await
                }
            }
        })
    };
    html! {
        <>
            <h2>{ "Orders waiting for payment" }</h2>
            <p class="hint">{ "Confirm a payment once it has reached you: an order's rental starts and the renter gets the login; a renewal extends the rental. An order not paid by the time under \"Pay by\" is cancelled and its device offered again." }</p>
            if let Some(e) = &*error { <ErrorBox error={e.clone()} /> }
            <table class="list" id="orders">
                <thead><tr><th scope="col">{ "Device" }</th><th scope="col">{ "Ordered" }</th>
                    <th scope="col">{ "Pay by" }</th><th scope="col">{ "Price" }</th><th scope="col">{ "" }</th></tr></thead>
                <tbody>{ for props.orders.iter().map(|o| html! {
                    <tr data-order={o.id.clone()}>
                        <td data-label="Device">{ &o.device_name }
                            if enum_str(&o.state) == "ACTIVE" { <span class="hint">{ " (renewal)" }</span> }</td>
                        <td data-label="Ordered">{ fmt_time(&o.created_at) }</td>
                        <td data-label="Pay by">{ o.pay_by.as_deref().map(fmt_time).unwrap_or_default() }</td>
                        <td data-label="Price">{ o.payment.as_ref().map(|p| fmt_money(p.amount.minor, &p.amount.currency)).unwrap_or_default() }</td>
                        <td>
                            if o.payment.as_ref().is_some_and(|p| p.confirmed_by_hand) {
                                <button type="button" class="confirm-payment" onclick={act(o.id.clone(), true)}>{ "Payment received" }</button>
                                { " " }
                            }
                            <button type="button" class="secondary" onclick={act(o.id.clone(), false)}>{ "Cancel" }</button>
                        </td>
                    </tr>
                }) }</tbody>
            </table>
            <h2>{ "Rentals" }</h2>
        </>
    }
}

#[function_component(RentalsPage)]
pub fn rentals_page() -> Html {
    let live = use_context::<crate::live::Live>().unwrap_or_default();
    let (load, reload) = use_load((live.epoch, live.rentals), |_| async {
        let rentals = api::run::<AllRentals>(all_rentals::Variables {}).await?;
        let fees = api::run::<PlatformEarnings>(platform_earnings::Variables {}).await?;
        Ok::<_, ApiError>((rentals, fees.platform_earnings))
    });
    html! {
        <section>
            <h1>{ "All rentals" }</h1>
            {
                match &*load {
                    Load::Loading => html! { <Loading /> },
                    Load::Failed(e) => failed(e, &reload),
                    Load::Ready((d, fees)) => html! {
                        <>
                            <p id="platform-earnings">{ "Platform fees earned (net of refunds): " }{
                                crate::ui::money_list(fees.iter().map(|m| (m.minor, m.currency.as_str())))
                            }</p>
                            <OrdersWaiting orders={d.orders.clone()} reload={reload.clone()} />
                            if d.rentals.is_empty() {
                                <Empty title="No rentals yet">
                                    <p>{ "Renters order from the storefront; an admin can also grant one by hand with the grantRental mutation (GraphiQL)." }</p>
                                </Empty>
                            } else {
                                <RentalsTable rentals={d.rentals.clone()} />
                            }
                        </>
                    },
                }
            }
        </section>
    }
}

#[function_component(AuditPage)]
pub fn audit_page() -> Html {
    let (load, reload) = use_load((), |()| async {
        api::run::<AuditLog>(audit_log::Variables { before: None })
            .await
            .map(|d| d.audit_log)
    });
    let list = match &*load {
        Load::Loading => return html! { <Loading /> },
        Load::Failed(e) => return failed(e, &reload),
        Load::Ready(l) => l,
    };
    html! {
        <section>
            <h1>{ "Audit log" }</h1>
            <table class="list" id="audit">
                <thead><tr><th scope="col">{ "When" }</th><th scope="col">{ "Who" }</th><th scope="col">{ "What" }</th>
                    <th scope="col">{ "On" }</th><th scope="col">{ "Detail" }</th></tr></thead>
                <tbody>{ for list.iter().map(|a| html! {
                    <tr data-action={a.action.clone()}>
                        <td data-label="When">{ fmt_time(&a.at) }</td>
                        <td data-label="Who">{ &a.actor }</td>
                        <td data-label="What"><code>{ &a.action }</code></td>
                        <td data-label="On">{ format!("{} {}", a.target_type, a.target_id) }</td>
                        <td data-label="Detail"><code class="detail">{ a.detail.to_string() }</code></td>
                    </tr>
                }) }</tbody>
            </table>
        </section>
    }
}
