//! The signed-in user's account: change the password (a generated first password asks for it).

use super::auth::setter;
use crate::api::{self, ApiError, ChangePassword, change_password};
use crate::session::use_session;
use crate::ui::{ErrorBox, Field};
use p2pvps_shared::Password;
use yew::prelude::*;

#[function_component(AccountPage)]
pub fn account_page() -> Html {
    let session = use_session();
    let current = use_state(String::new);
    let new = use_state(String::new);
    let local = use_state(|| None::<String>);
    let result = use_state(|| None::<Result<(), ApiError>>);
    let Some(user) = session.user.clone() else {
        return html! {};
    };
    let onsubmit = {
        let (current, new, local, result) =
            (current.clone(), new.clone(), local.clone(), result.clone());
        let (set, user) = (session.set.clone(), user.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            if let Err(e) = Password::parse(&new) {
                local.set(Some(api::capitalise(&e.message)));
                return;
            }
            local.set(None);
            let vars = change_password::Variables {
                current: (*current).clone(),
                new: (*new).clone(),
            };
            let (result, set, mut user) = (result.clone(), set.clone(), user.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::run::<ChangePassword>(vars).await {
                    Ok(data) => {
                        user.must_change_password = data.change_password.must_change_password;
                        set.emit(Some(user));
                        result.set(Some(Ok(())));
                    }
                    Err(e) => result.set(Some(Err(e))),
                }
            });
        })
    };
    let remote_field = |name: &str| match &*result {
        Some(Err(e)) => e.field(name),
        _ => None,
    };
    let status = match &*result {
        Some(Ok(())) => html! { <p class="notice" role="status">{ "Password changed." }</p> },
        Some(Err(e))
            if e.field("currentPassword").is_none() && e.field("newPassword").is_none() =>
        {
            html! { <ErrorBox error={e.clone()} /> }
        }
        _ => html! {},
    };
    html! {
        <section class="narrow">
            <h1>{ "Account" }</h1>
            <p>{ format!("Signed in as {} ({}).", user.email, user.role.as_str()) }</p>
            if user.must_change_password {
                <p class="notice" role="status">{ "Your password was generated for you: choose your own now." }</p>
            }
            <h2>{ "Change password" }</h2>
            { status }
            <form {onsubmit} novalidate=true>
                <Field id="current-password" label="Current password" kind="password" value={(*current).clone()}
                    oninput={setter(&current)} error={remote_field("currentPassword")}
                    autocomplete="current-password" required=true />
                <Field id="new-password" label="New password" kind="password" value={(*new).clone()}
                    oninput={setter(&new)} error={(*local).clone().or_else(|| remote_field("newPassword"))}
                    hint={format!("At least {} characters.", Password::MIN_CHARS)}
                    autocomplete="new-password" required=true />
                <button type="submit" id="change-password">{ "Change password" }</button>
            </form>
        </section>
    }
}
