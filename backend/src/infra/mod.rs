//! What every domain builds on and none owns: the database helpers, the event channels between
//! instances, leader election, shutdown, metrics, the audit log and the crypto of secrets.

pub mod audit;
pub mod crypto;
pub mod db;
pub mod events;
pub mod leader;
pub mod metrics;
pub mod shutdown;
#[cfg(test)]
pub mod testing;
