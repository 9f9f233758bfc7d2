//! The p2pvps dashboard: a Yew single-page app over the server's GraphQL API.
//!
//! - `api`: one typed operation per `queries/*.graphql`, run over HTTP.
//! - `live`: device status pushed over the graphql-transport-ws websocket.
//! - `session`, `route`, `app`: who is signed in, the addresses, the shell around the pages.
//! - `pages/`: one module per page; `ui` and `chart`: the pieces they share.

mod api;
mod app;
mod chart;
mod live;
mod load;
mod pages;
mod route;
mod session;
mod ui;

fn main() {
    yew::Renderer::<app::App>::new().render();
}
