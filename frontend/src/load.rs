//! A page's data: loading, failed (with a way to retry), or ready.

use crate::api::ApiError;
use crate::ui::ErrorBox;
use std::future::Future;
use yew::prelude::*;

#[derive(Clone, PartialEq)]
pub enum Load<T> {
    Loading,
    Failed(ApiError),
    Ready(T),
}

/// Runs `fetch(deps)` on mount, whenever `deps` change, and whenever the returned callback is called.
#[hook]
pub fn use_load<D, T, F, Fut>(deps: D, fetch: F) -> (UseStateHandle<Load<T>>, Callback<()>)
where
    D: PartialEq + Clone + 'static,
    T: 'static,
    F: Fn(D) -> Fut + 'static,
    Fut: Future<Output = Result<T, ApiError>> + 'static,
{
    let load = use_state(|| Load::Loading);
    let attempt = use_state(|| 0u32);
    {
        let load = load.clone();
        use_effect_with((deps, *attempt), move |(deps, _)| {
            let fut = fetch(deps.clone());
            wasm_bindgen_futures::spawn_local(async move {
                load.set(match fut.await {
                    Ok(v) => Load::Ready(v),
                    Err(e) => Load::Failed(e),
                });
            });
        });
    }
    let reload = Callback::from(move |()| attempt.set(*attempt + 1));
    (load, reload)
}

/// The error of a failed load, with a button that tries again.
pub fn failed(error: &ApiError, reload: &Callback<()>) -> Html {
    html! { <ErrorBox error={error.clone()} retry={reload.clone()} /> }
}

/// A button's action: runs the request `make` returns (a fresh one per click); on success calls `done`
/// (a reload, say), on failure shows the error in `error`.
pub fn action<F, Fut>(
    error: &UseStateHandle<Option<ApiError>>,
    done: &Callback<()>,
    make: F,
) -> Callback<MouseEvent>
where
    F: Fn() -> Fut + 'static,
    Fut: Future<Output = Result<(), ApiError>> + 'static,
{
    let (error, done) = (error.clone(), done.clone());
    Callback::from(move |_| {
        let (error, done, request) = (error.clone(), done.clone(), make());
        wasm_bindgen_futures::spawn_local(async move {
            match request.await {
                Ok(()) => done.emit(()),
                Err(e) => error.set(Some(e)),
            }
        });
    })
}
