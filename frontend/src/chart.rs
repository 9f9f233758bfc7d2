//! The uptime chart: one inline SVG bar per window, coloured by status (no chart library, no assets).

use crate::ui::{fmt_time, millis};
use yew::prelude::*;

#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    /// `ONLINE`, `OFFLINE` or `NEW`.
    pub status: String,
    pub from: String,
    pub to: String,
}

#[derive(Properties, PartialEq)]
pub struct ChartProps {
    pub id: AttrValue,
    pub title: AttrValue,
    pub spans: Vec<Span>,
    pub online_fraction: f64,
}

/// Width of the drawing in SVG units; integers keep float formatting out of the wasm.
const WIDTH: f64 = 100_000.0;

#[function_component(UptimeChart)]
pub fn uptime_chart(props: &ChartProps) -> Html {
    let (Some(first), Some(last)) = (props.spans.first(), props.spans.last()) else {
        return html! { <p>{ "No history yet." }</p> };
    };
    let (start, end) = (millis(&first.from), millis(&last.to));
    let total = (end - start).max(1.0);
    let tenths = (props.online_fraction * 1000.0).round() as i64;
    let percent = format!("{}.{} % online", tenths / 10, tenths % 10);
    html! {
        <figure class="uptime" id={props.id.clone()}>
            <figcaption>{ &props.title }{ ": " }<strong>{ &percent }</strong></figcaption>
            <svg viewBox="0 0 100000 24" preserveAspectRatio="none" role="img"
                aria-label={format!("{}: {percent}", props.title)}>
                { for props.spans.iter().map(|s| {
                    let x = ((millis(&s.from) - start) / total * WIDTH) as i64;
                    let w = (((millis(&s.to) - millis(&s.from)) / total * WIDTH) as i64).max(50);
                    let class = s.status.to_ascii_lowercase();
                    html! {
                        <rect class={class} x={x.to_string()} y="0" width={w.to_string()} height="24">
                            <title>{ format!("{}: {} – {}", s.status.to_ascii_lowercase(), fmt_time(&s.from), fmt_time(&s.to)) }</title>
                        </rect>
                    }
                }) }
            </svg>
            <div class="axis"><span>{ fmt_time(&first.from) }</span><span>{ "now" }</span></div>
        </figure>
    }
}
