//! The shell: who is signed in, the live status feed, the navigation and the page for each address.

use crate::api::{self, ApiError, LogOut, Me, log_out, me};
use crate::live::{Live, LiveProvider};
use crate::pages;
use crate::route::Route;
use crate::session::{Session, User, user_from};
use crate::ui::{ErrorBox, Loading};
use p2pvps_shared::Role;
use yew::prelude::*;
use yew_router::prelude::*;

#[derive(Clone, PartialEq)]
enum Start {
    Loading,
    Failed(ApiError),
    Ready(Option<User>),
}

#[function_component(App)]
pub fn app() -> Html {
    let start = use_state(|| Start::Loading);
    let attempt = use_state(|| 0u32);
    {
        let start = start.clone();
        use_effect_with(*attempt, move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                start.set(match api::run::<Me>(me::Variables {}).await {
                    Ok(data) => Start::Ready(data.me.as_ref().map(|u| user_from!(u))),
                    Err(e) => Start::Failed(e),
                });
            });
        });
    }
    let user = match &*start {
        Start::Loading => return html! { <main class="page"><Loading /></main> },
        Start::Failed(e) => {
            let retry = {
                let attempt = attempt.clone();
                Callback::from(move |()| attempt.set(*attempt + 1))
            };
            return html! { <main class="page"><ErrorBox error={e.clone()} {retry} /></main> };
        }
        Start::Ready(user) => user.clone(),
    };
    let session = Session {
        user: user.clone(),
        set: {
            let start = start.clone();
            Callback::from(move |u| start.set(Start::Ready(u)))
        },
    };
    html! {
        <ContextProvider<Session> context={session}>
            <LiveProvider enabled={user.is_some()}>
                <BrowserRouter>
                    <Header />
                    <main class="page" id="main">
                        <Switch<Route> render={switch} />
                    </main>
                </BrowserRouter>
            </LiveProvider>
        </ContextProvider<Session>>
    }
}

fn switch(route: Route) -> Html {
    match route {
        Route::Home => html! { <Home /> },
        Route::LogIn => html! { <pages::auth::LogInPage /> },
        Route::SignUp => html! { <pages::auth::SignUpPage /> },
        Route::Account => guarded(None, html! { <pages::account::AccountPage /> }),
        Route::Devices => guarded(
            Some(Role::Owner),
            html! { <pages::devices::DevicesPage all={false} /> },
        ),
        Route::AddDevice => guarded(
            Some(Role::Owner),
            html! { <pages::add_device::AddDevicePage /> },
        ),
        Route::Device { id } => guarded(
            Some(Role::Owner),
            html! { <pages::device::DevicePage {id} /> },
        ),
        Route::Rentals => guarded(None, html! { <pages::rentals::RentalsPage /> }),
        Route::Store => html! { <pages::store::StorePage /> },
        Route::Claim { token } => guarded(None, html! { <pages::store::ClaimPage {token} /> }),
        Route::AdminUsers => guarded(Some(Role::Admin), html! { <pages::admin::UsersPage /> }),
        Route::AdminDevices => guarded(
            Some(Role::Admin),
            html! { <pages::devices::DevicesPage all={true} /> },
        ),
        Route::AdminRentals => guarded(Some(Role::Admin), html! { <pages::admin::RentalsPage /> }),
        Route::AdminAudit => guarded(Some(Role::Admin), html! { <pages::admin::AuditPage /> }),
        Route::NotFound => html! { <NotFound /> },
    }
}

/// The page if the viewer is signed in (and, for `role`, has it or is an admin); else the way there.
fn guarded(role: Option<Role>, page: Html) -> Html {
    html! { <Guard {role}>{ page }</Guard> }
}

#[derive(Properties, PartialEq)]
struct GuardProps {
    role: Option<Role>,
    children: Html,
}

#[function_component(Guard)]
fn guard(props: &GuardProps) -> Html {
    let session = crate::session::use_session();
    let here = use_route::<Route>();
    match (session.role(), props.role) {
        (None, _) => {
            crate::route::remember(here);
            html! { <Redirect<Route> to={Route::LogIn} /> }
        }
        (Some(have), Some(need)) if have != need && have != Role::Admin => html! {
            <section class="empty">
                <h1>{ "Not for this account" }</h1>
                <p>{ format!("This page is for {} accounts.", need.as_str()) }</p>
                <Link<Route> to={Route::Home}>{ "Go to your start page" }</Link<Route>>
            </section>
        },
        _ => props.children.clone(),
    }
}

/// Each role's start page.
#[function_component(Home)]
fn home() -> Html {
    let session = crate::session::use_session();
    if session
        .user
        .as_ref()
        .is_some_and(|u| u.must_change_password)
    {
        // A generated password (the first admin's): choosing one's own comes first.
        return html! { <Redirect<Route> to={Route::Account} /> };
    }
    match session.role() {
        None => html! { <Redirect<Route> to={Route::Store} /> },
        Some(Role::Owner) => html! { <Redirect<Route> to={Route::Devices} /> },
        Some(Role::Renter) => html! { <Redirect<Route> to={Route::Rentals} /> },
        Some(Role::Admin) => html! { <Redirect<Route> to={Route::AdminUsers} /> },
    }
}

#[function_component(NotFound)]
fn not_found() -> Html {
    html! {
        <section class="empty">
            <h1>{ "Page not found" }</h1>
            <p>{ "Nothing lives at this address." }</p>
            <Link<Route> to={Route::Home}>{ "Go to your start page" }</Link<Route>>
        </section>
    }
}

#[function_component(Header)]
fn header() -> Html {
    let session = crate::session::use_session();
    let live = use_context::<Live>().unwrap_or_default();
    let navigator = use_navigator();
    let route = use_route::<Route>();
    let link = |to: Route, text: &'static str| {
        let current = route.as_ref() == Some(&to);
        html! {
            <li><Link<Route> to={to} classes={classes!(current.then_some("current"))}>{ text }</Link<Route>></li>
        }
    };
    let log_out = {
        let set = session.set.clone();
        Callback::from(move |_| {
            let (set, navigator) = (set.clone(), navigator.clone());
            wasm_bindgen_futures::spawn_local(async move {
                // Signed out locally whatever the answer: the cookie is the server's to drop.
                let _ = api::send::<LogOut>(log_out::Variables {}).await;
                set.emit(None);
                if let Some(n) = navigator {
                    n.push(&Route::LogIn);
                }
            });
        })
    };
    let nav = match session.role() {
        None => html! {
            <ul>{ link(Route::Store, "Rent a server") }{ link(Route::LogIn, "Log in") }{ link(Route::SignUp, "Sign up") }</ul>
        },
        Some(role) => html! {
            <ul>
                if role == Role::Owner {
                    { link(Route::Devices, "My devices") }
                    { link(Route::AddDevice, "Add device") }
                    { link(Route::Rentals, "Rentals & earnings") }
                }
                if role == Role::Renter { { link(Route::Rentals, "My rentals") } }
                { link(Route::Store, "Rent a server") }
                if role == Role::Admin {
                    { link(Route::AdminUsers, "Users") }
                    { link(Route::AdminDevices, "Devices") }
                    { link(Route::AdminRentals, "Rentals") }
                    { link(Route::AdminAudit, "Audit log") }
                    <li><a href="/graphql">{ "GraphiQL" }</a></li>
                }
                { link(Route::Account, "Account") }
            </ul>
        },
    };
    let live_note = match (session.user.is_some(), live.connected, live.tried) {
        (true, true, _) => {
            html! { <span class="live on" title="Statuses update live">{ "live" }</span> }
        }
        (true, false, true) => html! {
            <span class="live off" role="status">{ "connection lost, reconnecting…" }</span>
        },
        _ => html! {},
    };
    html! {
        <header class="top">
            <a class="skip" href="#main">{ "Skip to content" }</a>
            <Link<Route> to={Route::Home} classes="brand">{ "p2pvps" }</Link<Route>>
            <nav aria-label="Main">{ nav }</nav>
            <div class="who">
                { live_note }
                if let Some(user) = &session.user {
                    <span class="email">{ &user.email }</span>
                    <button type="button" class="secondary" id="log-out" onclick={log_out}>{ "Log out" }</button>
                }
            </div>
        </header>
    }
}
