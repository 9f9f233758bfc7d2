//! The p2pvps dashboard. For now a landing page that proves the build and serving path; the dashboard
//! proper (sign-up, devices, rentals) is its own piece of work.

use yew::prelude::*;

#[function_component(App)]
fn app() -> Html {
    // Uses the shared crate so the wasm build proves it compiles for the browser.
    let example = p2pvps_shared::SubdomainLabel::parse("my-pi")
        .map(|s| s.to_string())
        .unwrap_or_default();
    html! {
        <main>
            <h1>{ "p2pvps" }</h1>
            <p>{ "Rent out small computers as tiny VPSs, reached through this server." }</p>
            <p>{ format!("Each device gets a subdomain like {example}.") }</p>
            <p><a href="/graphql">{ "GraphQL API (GraphiQL)" }</a></p>
        </main>
    }
}

fn main() {
    yew::Renderer::<App>::new().render();
}
