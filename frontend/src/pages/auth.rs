//! Log in and sign up. The form checks fields with the server's own rules (the shared crate) before
//! sending, and shows the server's per-field answers next to the fields.

use crate::api::{self, ApiError, LogIn, SignUp, log_in, sign_up};
use crate::route::Route;
use crate::session::{User, use_session, user_from};
use crate::ui::{ErrorBox, Field};
use p2pvps_shared::{Email, Password};
use std::collections::BTreeMap;
use yew::prelude::*;
use yew_router::prelude::*;

/// Field messages, from the local check or from the server.
type Errors = BTreeMap<&'static str, String>;

fn check(email: &str, password: &str) -> Errors {
    let mut errors = Errors::new();
    if let Err(e) = Email::parse(email) {
        errors.insert("email", e.message);
    }
    if let Err(e) = Password::parse(password) {
        errors.insert("password", e.message);
    }
    errors
}

fn field_error(local: &Errors, remote: &Option<ApiError>, name: &'static str) -> Option<String> {
    local
        .get(name)
        .map(|m| crate::api::capitalise(m))
        .or_else(|| remote.as_ref().and_then(|e| e.field(name)))
}

/// Runs a log-in or sign-up request: on success the session gets the user and the browser goes to the
/// start page; a refusal is shown on the form.
fn sign_in(
    request: impl std::future::Future<Output = Result<User, ApiError>> + 'static,
    set: &Callback<Option<User>>,
    navigator: Option<Navigator>,
    remote: &UseStateHandle<Option<ApiError>>,
    busy: &UseStateHandle<bool>,
) {
    let (set, remote, busy) = (set.clone(), remote.clone(), busy.clone());
    busy.set(true);
    wasm_bindgen_futures::spawn_local(async move {
        match request.await {
            Ok(user) => {
                set.emit(Some(user));
                if let Some(n) = navigator {
                    n.push(&crate::route::after_sign_in());
                }
            }
            Err(e) => {
                remote.set(Some(e));
                busy.set(false);
            }
        }
    });
}

pub fn setter(state: &UseStateHandle<String>) -> Callback<String> {
    let state = state.clone();
    Callback::from(move |v| state.set(v))
}

#[function_component(LogInPage)]
pub fn log_in_page() -> Html {
    let session = use_session();
    let navigator = use_navigator();
    let email = use_state(String::new);
    let password = use_state(String::new);
    let local = use_state(Errors::new);
    let remote = use_state(|| None::<ApiError>);
    let busy = use_state(|| false);
    if session.user.is_some() {
        return html! { <Redirect<Route> to={Route::Home} /> };
    }
    let onsubmit = {
        let (email, password, local, remote, busy) = (
            email.clone(),
            password.clone(),
            local.clone(),
            remote.clone(),
            busy.clone(),
        );
        let set = session.set.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            // Only the e-mail's shape is checked here: a password that no longer meets the rules must
            // still be able to log in.
            let mut errors = check(&email, &password);
            errors.remove("password");
            if password.is_empty() {
                errors.insert("password", "enter your password".to_owned());
            }
            local.set(errors.clone());
            if !errors.is_empty() {
                return;
            }
            let input = log_in::LogInInput {
                email: (*email).clone(),
                password: (*password).clone(),
                bearer: false,
            };
            let request = async move {
                api::run::<LogIn>(log_in::Variables { input })
                    .await
                    .map(|d| user_from!(&d.log_in.user))
            };
            sign_in(request, &set, navigator.clone(), &remote, &busy);
        })
    };
    html! {
        <section class="narrow">
            <h1>{ "Log in" }</h1>
            if let Some(e) = &*remote {
                if e.field("email").is_none() && e.field("password").is_none() { <ErrorBox error={e.clone()} /> }
            }
            <form {onsubmit} novalidate=true>
                <Field id="email" label="E-mail" kind="email" value={(*email).clone()} oninput={setter(&email)}
                    error={field_error(&local, &remote, "email")} autocomplete="username" required=true />
                <Field id="password" label="Password" kind="password" value={(*password).clone()}
                    oninput={setter(&password)} error={field_error(&local, &remote, "password")}
                    autocomplete="current-password" required=true />
                <button type="submit" id="log-in" disabled={*busy}>{ "Log in" }</button>
            </form>
            <p>{ "No account yet? " }<Link<Route> to={Route::SignUp}>{ "Sign up" }</Link<Route>></p>
        </section>
    }
}

#[function_component(SignUpPage)]
pub fn sign_up_page() -> Html {
    let session = use_session();
    let navigator = use_navigator();
    let email = use_state(String::new);
    let password = use_state(String::new);
    let renter = use_state(|| false);
    let local = use_state(Errors::new);
    let remote = use_state(|| None::<ApiError>);
    let busy = use_state(|| false);
    if session.user.is_some() {
        return html! { <Redirect<Route> to={Route::Home} /> };
    }
    let onsubmit = {
        let (email, password, renter, local, remote, busy) = (
            email.clone(),
            password.clone(),
            renter.clone(),
            local.clone(),
            remote.clone(),
            busy.clone(),
        );
        let set = session.set.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let errors = check(&email, &password);
            local.set(errors.clone());
            if !errors.is_empty() {
                return;
            }
            let input = sign_up::SignUpInput {
                email: (*email).clone(),
                password: (*password).clone(),
                role: if *renter {
                    sign_up::SignUpRole::RENTER
                } else {
                    sign_up::SignUpRole::OWNER
                },
                bearer: false,
            };
            let request = async move {
                api::run::<SignUp>(sign_up::Variables { input })
                    .await
                    .map(|d| user_from!(&d.sign_up.user))
            };
            sign_in(request, &set, navigator.clone(), &remote, &busy);
        })
    };
    let choose = |value: bool| {
        let renter = renter.clone();
        Callback::from(move |_| renter.set(value))
    };
    html! {
        <section class="narrow">
            <h1>{ "Sign up" }</h1>
            if let Some(e) = &*remote {
                if e.field("email").is_none() && e.field("password").is_none() { <ErrorBox error={e.clone()} /> }
            }
            <form {onsubmit} novalidate=true>
                <Field id="email" label="E-mail" kind="email" value={(*email).clone()} oninput={setter(&email)}
                    error={field_error(&local, &remote, "email")} autocomplete="username" required=true />
                <Field id="password" label="Password" kind="password" value={(*password).clone()}
                    oninput={setter(&password)} error={field_error(&local, &remote, "password")}
                    hint={format!("At least {} characters.", Password::MIN_CHARS)}
                    autocomplete="new-password" required=true />
                <fieldset>
                    <legend>{ "I want to" }</legend>
                    <label><input type="radio" name="role" id="role-owner" checked={!*renter}
                        onchange={choose(false)} />{ " rent out my devices" }</label>
                    <label><input type="radio" name="role" id="role-renter" checked={*renter}
                        onchange={choose(true)} />{ " rent a device" }</label>
                </fieldset>
                <button type="submit" id="sign-up" disabled={*busy}>{ "Create account" }</button>
            </form>
            <p>{ "Have an account? " }<Link<Route> to={Route::LogIn}>{ "Log in" }</Link<Route>></p>
        </section>
    }
}
