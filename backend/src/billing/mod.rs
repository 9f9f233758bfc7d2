//! Money: the storefront (orders placed in our dashboard), their payments, and the double-entry ledger
//! every rental's money goes through.

pub mod ledger;
pub mod payments;
pub mod storefront;
