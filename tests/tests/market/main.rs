//! The marketplace binary: our OpenBazaar adapter and the fake node it is tested against, selling through
//! it in-process, and the real `p2pvps` binary selling, killed mid-order and started again.

mod openbazaar_client;
mod openbazaar_fake;
mod sales;
mod sales_crash;
mod sales_payment;
