//! One module per page.

pub mod account;
pub mod add_device;
pub mod admin;
pub mod auth;
pub mod device;
pub mod devices;
pub mod rentals;
pub mod ssh_keys;
pub mod store;
