//! The p2pvps server as a library: the `p2pvps` binary and the end-to-end tests both build on it.
//!
//! One folder per domain, each owning its tables, SQL and errors (see ARCHITECTURE.md for the map):
//! `accounts` (users, sessions, limits), `devices`, `rentals`, `market` (selling on marketplaces),
//! `billing` (the storefront, payments, the ledger); the servers in front of them (`http`, `graphql`,
//! `ssh`, `gateway`); `infra` (database, events, metrics, crypto, ...); `cli` and `app` to run it all.

pub mod accounts;
pub mod app;
pub mod billing;
pub mod cli;
pub mod devices;
pub mod gateway;
pub mod graphql;
pub mod http;
pub mod infra;
pub mod market;
pub mod rentals;
pub mod ssh;
