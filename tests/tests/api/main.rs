//! The API binary: the server started in-process on port 0 (`p2pvps_tests::TestApp`), a fresh database per
//! test, real HTTP, websockets and OpenSSH. One module per area of the API.

mod auth;
mod authz;
mod database;
mod devices;
mod http;
mod ledger;
mod renter;
mod schema;
mod storefront;
mod subscription;
