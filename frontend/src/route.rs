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
    #[at("/store")]
    Store,
    #[at("/claim/:token")]
    Claim { token: String },
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

thread_local! {
    /// Where a signed-out visitor was going when sent to log in (the app stays loaded meanwhile).
    static NEXT: std::cell::RefCell<Option<Route>> = const { std::cell::RefCell::new(None) };
}

/// Remembers where to go once signed in.
pub fn remember(route: Option<Route>) {
    NEXT.with(|n| *n.borrow_mut() = route);
}

/// Where to go after signing in: the remembered page, or the start page.
pub fn after_sign_in() -> Route {
    NEXT.with(|n| n.borrow_mut().take()).unwrap_or(Route::Home)
}
