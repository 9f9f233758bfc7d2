//! Small building blocks every page uses: labelled fields with their errors, copyable commands, status
//! badges, empty and error states, times and money.

use crate::api::ApiError;
use gloo_timers::callback::Interval;
use js_sys::{Date, Function, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use web_sys::HtmlInputElement;
use yew::prelude::*;

#[derive(Properties, PartialEq)]
pub struct FieldProps {
    pub id: AttrValue,
    pub label: AttrValue,
    #[prop_or(AttrValue::Static("text"))]
    pub kind: AttrValue,
    pub value: AttrValue,
    pub oninput: Callback<String>,
    #[prop_or_default]
    pub error: Option<String>,
    #[prop_or_default]
    pub hint: Option<AttrValue>,
    #[prop_or_default]
    pub autocomplete: Option<AttrValue>,
    #[prop_or_default]
    pub required: bool,
}

/// A labelled input with its error right under it (announced to screen readers with the input).
#[function_component(Field)]
pub fn field(props: &FieldProps) -> Html {
    let oninput = {
        let cb = props.oninput.clone();
        Callback::from(move |e: InputEvent| {
            if let Some(input) = e
                .target()
                .and_then(|t| t.dyn_into::<HtmlInputElement>().ok())
            {
                cb.emit(input.value());
            }
        })
    };
    let error_id = format!("{}-error", props.id);
    let hint_id = format!("{}-hint", props.id);
    let described = match (&props.error, &props.hint) {
        (Some(_), _) => Some(error_id.clone()),
        (None, Some(_)) => Some(hint_id.clone()),
        _ => None,
    };
    html! {
        <div class={classes!("field", props.error.is_some().then_some("invalid"))}>
            <label for={props.id.clone()}>{ &props.label }</label>
            <input id={props.id.clone()} name={props.id.clone()} type={props.kind.clone()}
                value={props.value.clone()} {oninput} required={props.required}
                autocomplete={props.autocomplete.clone()}
                aria-invalid={props.error.is_some().then_some("true")}
                aria-describedby={described} />
            if let Some(hint) = &props.hint {
                <small id={hint_id} class="hint">{ hint }</small>
            }
            if let Some(error) = &props.error {
                <small id={error_id} class="error" role="alert">{ error }</small>
            }
        </div>
    }
}

/// Writes to the clipboard where the browser allows it (secure contexts only).
fn copy_to_clipboard(text: &str) -> bool {
    let Some(window) = web_sys::window() else {
        return false;
    };
    let navigator: JsValue = window.navigator().into();
    let Ok(clipboard) = Reflect::get(&navigator, &"clipboard".into()) else {
        return false;
    };
    if clipboard.is_undefined() {
        return false;
    }
    Reflect::get(&clipboard, &"writeText".into())
        .ok()
        .and_then(|f| f.dyn_into::<Function>().ok())
        .is_some_and(|f| f.call1(&clipboard, &JsValue::from_str(text)).is_ok())
}

#[derive(Properties, PartialEq)]
pub struct CopyProps {
    pub text: AttrValue,
    #[prop_or(AttrValue::Static("Copy"))]
    pub label: AttrValue,
}

#[function_component(CopyButton)]
pub fn copy_button(props: &CopyProps) -> Html {
    let note = use_state(|| None::<&'static str>);
    let onclick = {
        let (note, text) = (note.clone(), props.text.clone());
        Callback::from(move |_| {
            note.set(Some(if copy_to_clipboard(&text) {
                "Copied"
            } else {
                "Select the text and press Ctrl+C"
            }));
        })
    };
    html! {
        <span class="copy">
            <button type="button" class="secondary" {onclick}>{ &props.label }</button>
            if let Some(n) = *note { <small role="status">{ n }</small> }
        </span>
    }
}

#[derive(Properties, PartialEq)]
pub struct CodeProps {
    pub id: AttrValue,
    pub text: AttrValue,
    #[prop_or_default]
    pub label: Option<AttrValue>,
}

/// A command or file to paste, with a copy button.
#[function_component(Code)]
pub fn code(props: &CodeProps) -> Html {
    html! {
        <div class="code">
            if let Some(label) = &props.label { <div class="code-label">{ label }</div> }
            <pre id={props.id.clone()} tabindex="0">{ &props.text }</pre>
            <CopyButton text={props.text.clone()} />
        </div>
    }
}

#[derive(Properties, PartialEq)]
pub struct StatusProps {
    /// `ONLINE`, `OFFLINE` or `NEW`.
    pub status: AttrValue,
}

#[function_component(StatusBadge)]
pub fn status_badge(props: &StatusProps) -> Html {
    let s = props.status.to_ascii_lowercase();
    let label = match s.as_str() {
        "new" => "never connected",
        other => other,
    }
    .to_owned();
    html! { <span class={classes!("badge", s.clone())} data-status={s.clone()}>{ label }</span> }
}

#[function_component(RentedBadge)]
pub fn rented_badge() -> Html {
    html! { <span class="badge rented" data-rented="true">{ "rented" }</span> }
}

#[derive(Properties, PartialEq)]
pub struct EmptyProps {
    pub title: AttrValue,
    #[prop_or_default]
    pub children: Html,
}

/// What to do next, where a list is empty.
#[function_component(Empty)]
pub fn empty(props: &EmptyProps) -> Html {
    html! {
        <div class="empty">
            <h2>{ &props.title }</h2>
            { props.children.clone() }
        </div>
    }
}

#[derive(Properties, PartialEq)]
pub struct ErrorProps {
    pub error: ApiError,
    #[prop_or_default]
    pub retry: Option<Callback<()>>,
}

/// A refused request, or a lost connection with a way to try again.
#[function_component(ErrorBox)]
pub fn error_box(props: &ErrorProps) -> Html {
    let retry = props.retry.clone().map(|r| {
        html! { <button type="button" onclick={Callback::from(move |_| r.emit(()))}>{ "Try again" }</button> }
    });
    let (title, class) = match props.error {
        ApiError::Network(_) => ("Lost connection to the server", "error-box offline"),
        ApiError::Refused { .. } => ("That did not work", "error-box"),
    };
    html! {
        <div class={class} role="alert">
            <strong>{ title }</strong>
            <p>{ props.error.message() }</p>
            { for retry }
        </div>
    }
}

#[function_component(Loading)]
pub fn loading() -> Html {
    html! { <p class="loading" aria-busy="true">{ "Loading…" }</p> }
}

/// Milliseconds since the epoch of an RFC 3339 time, as the browser reads it.
pub fn millis(rfc3339: &str) -> f64 {
    Date::parse(rfc3339)
}

/// A time in the viewer's locale and time zone.
pub fn fmt_time(rfc3339: &str) -> String {
    let date = Date::new(&JsValue::from_str(rfc3339));
    if date.get_time().is_nan() {
        return rfc3339.to_owned();
    }
    date.to_locale_string("default", &JsValue::UNDEFINED).into()
}

pub fn fmt_money(minor: i64, currency: &str) -> String {
    p2pvps_shared::Money::price(minor, currency)
        .map(|m| m.to_decimal_string())
        .unwrap_or_else(|_| format!("{minor} {currency}"))
}

/// `4.50 USD, 2.00 EUR`, or "nothing yet".
pub fn money_list<'a>(amounts: impl Iterator<Item = (i64, &'a str)>) -> String {
    let list: Vec<String> = amounts.map(|(m, c)| fmt_money(m, c)).collect();
    if list.is_empty() {
        "nothing yet".to_owned()
    } else {
        list.join(", ")
    }
}

/// `2 d 3 h`, `3 h 04 min`, `4 min 05 s`: a duration at the precision that matters.
pub fn fmt_duration(ms: f64) -> String {
    let s = (ms / 1000.0).max(0.0) as u64;
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d} d {h} h")
    } else if h > 0 {
        format!("{h} h {m:02} min")
    } else {
        format!("{m} min {sec:02} s")
    }
}

#[derive(Properties, PartialEq)]
pub struct CountdownProps {
    pub until: AttrValue,
}

/// Time left until `until`, ticking every second.
#[function_component(Countdown)]
pub fn countdown(props: &CountdownProps) -> Html {
    let now = use_state(Date::now);
    {
        let now = now.clone();
        use_effect_with((), move |_| {
            let tick = Interval::new(1_000, move || now.set(Date::now()));
            move || drop(tick)
        });
    }
    let left = millis(&props.until) - *now;
    if left.is_nan() {
        return html! {};
    }
    html! {
        <span class="countdown" data-left-ms={(left.max(0.0) as u64).to_string()}>
            { if left > 0.0 { format!("{} left", fmt_duration(left)) } else { "ended".to_owned() } }
        </span>
    }
}
