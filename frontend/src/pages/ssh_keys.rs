//! The public keys a device may log in with instead of its credential (what an unattended device uses).

use crate::api::{self, AddSshKey, ApiError, RemoveSshKey, add_ssh_key, remove_ssh_key};
use crate::ui::{ErrorBox, fmt_time};
use web_sys::HtmlTextAreaElement;
use yew::prelude::*;

#[derive(Clone, PartialEq)]
pub struct Key {
    pub fingerprint: String,
    pub public_key: String,
    pub created_at: String,
}

#[derive(Properties, PartialEq)]
pub struct KeysProps {
    pub device_id: AttrValue,
    pub keys: Vec<Key>,
    /// Called after a change, to refetch the device.
    pub changed: Callback<()>,
}

#[function_component(SshKeys)]
pub fn ssh_keys(props: &KeysProps) -> Html {
    let draft = use_state(String::new);
    let error = use_state(|| None::<ApiError>);
    let oninput = {
        let draft = draft.clone();
        Callback::from(move |e: InputEvent| {
            if let Some(t) = e.target_dyn_into::<HtmlTextAreaElement>() {
                draft.set(t.value());
            }
        })
    };
    let onsubmit = {
        let (draft, error, changed, id) = (
            draft.clone(),
            error.clone(),
            props.changed.clone(),
            props.device_id.to_string(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let vars = add_ssh_key::Variables {
                id: id.clone(),
                key: draft.trim().to_owned(),
            };
            let (draft, error, changed) = (draft.clone(), error.clone(), changed.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::send::<AddSshKey>(vars).await {
                    Ok(_) => {
                        draft.set(String::new());
                        error.set(None);
                        changed.emit(());
                    }
                    Err(e) => error.set(Some(e)),
                }
            });
        })
    };
    let remove = |fingerprint: String| {
        let (error, changed, id) = (
            error.clone(),
            props.changed.clone(),
            props.device_id.to_string(),
        );
        Callback::from(move |_| {
            let vars = remove_ssh_key::Variables {
                id: id.clone(),
                fingerprint: fingerprint.clone(),
            };
            let (error, changed) = (error.clone(), changed.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api::send::<RemoveSshKey>(vars).await {
                    Ok(_) => changed.emit(()),
                    Err(e) => error.set(Some(e)),
                }
            });
        })
    };
    let field_error = error.as_ref().and_then(|e| e.field("publicKey"));
    html! {
        <div id="ssh-keys">
            if let Some(e) = error.as_ref().filter(|e| e.field("publicKey").is_none()) { <ErrorBox error={e.clone()} /> }
            if props.keys.is_empty() {
                <p>{ "No keys yet: the device logs in with its credential." }</p>
            } else {
                <ul class="keys">{ for props.keys.iter().map(|k| html! {
                    <li>
                        <code title={k.public_key.clone()}>{ &k.fingerprint }</code>{ " " }
                        <small class="hint">{ format!("added {}", fmt_time(&k.created_at)) }</small>{ " " }
                        <button type="button" class="secondary" onclick={remove(k.fingerprint.clone())}
                            aria-label={format!("Remove key {}", k.fingerprint)}>{ "Remove" }</button>
                    </li>
                }) }</ul>
            }
            <form {onsubmit} novalidate=true>
                <div class={classes!("field", field_error.is_some().then_some("invalid"))}>
                    <label for="new-key">{ "Add a public key" }</label>
                    <textarea id="new-key" rows="2" value={(*draft).clone()} {oninput}
                        placeholder="ssh-ed25519 AAAA… root@pi" aria-describedby="new-key-error" />
                    if let Some(m) = field_error { <small id="new-key-error" class="error" role="alert">{ m }</small> }
                </div>
                <button type="submit" id="add-key">{ "Add key" }</button>
            </form>
        </div>
    }
}
