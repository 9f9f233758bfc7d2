//! The dashboard's addresses. The server answers every one of them with index.html, so deep links load.

use yew_router::prelude::*;

#[derive(Clone, Routable, PartialEq, Debug)]
pub enum Route {
    #[at("/")]
    Home,
    #[at("/login")]
    LogIn,
    #[at("/signup")]
    SignUp,
    #[at("/account")]
    Account,
    #[at("/devices")]
    Devices,
    #[at("/devices/new")]
    AddDevice,
    #[at("/devices/:id")]
    Device { id: String },
    #[at("/rentals")]
    Rentals,
    #[at("/admin/users")]
    AdminUsers,
    #[at("/admin/devices")]
    AdminDevices,
    #[at("/admin/rentals")]
    AdminRentals,
    #[at("/admin/audit")]
    AdminAudit,
    #[not_found]
    #[at("/not-found")]
    NotFound,
}
