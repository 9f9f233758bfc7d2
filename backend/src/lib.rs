//! The p2pvps server as a library: the `p2pvps` binary and the end-to-end tests both build on it.

pub mod app;
pub mod audit;
pub mod auth_guard;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod db;
pub mod devices;
pub mod events;
pub mod gateway;
pub mod graphql;
pub mod http;
pub mod leader;
pub mod ledger;
pub mod listings;
pub mod marketplace;
pub mod metrics;
pub mod ratelimit;
pub mod reconcile;
pub mod rentals;
pub mod sales;
pub mod sessions;
pub mod shutdown;
pub mod ssh;
pub mod users;
