//! Types and validation rules used by both the server and the dashboard.
//!
//! Every value that crosses a trust boundary (an email, a device name, a subdomain label, a price) is parsed
//! into one of these types at the edge, so an invalid value cannot exist further in. The dashboard uses the same
//! parsers for its form errors, so the form rules are the server's rules. This crate must stay free of server
//! (sqlx, axum) and browser (web-sys) dependencies: it compiles for native and wasm32 alike.

pub mod agent;
pub mod connect;
mod device_name;
mod email;
mod enums;
mod error;
mod hardware;
mod money;
mod password;
mod subdomain;

pub use device_name::DeviceName;
pub use email::Email;
pub use enums::{DeviceStatus, HookAction, HookStatus, RentalState, Role};
pub use error::ValidationError;
pub use hardware::Hardware;
pub use money::{Currency, Money, split_fee};
pub use password::Password;
pub use subdomain::SubdomainLabel;
