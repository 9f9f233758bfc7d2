//! What an OpenBazaar node answers, decoded: any bytes are refused or read into orders, never a panic,
//! and every order read has an id, a listing and (if any) a positive price.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2pvps_server::market::openbazaar::{read_notifications, read_sales};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let mut orders = Vec::new();
    if let Ok((found, _foreign)) = read_notifications(body.clone()) {
        orders.extend(found);
    }
    if let Ok(found) = read_sales(body) {
        orders.extend(found);
    }
    for order in orders {
        assert!(order.paid.is_none_or(|p| p.minor > 0));
        let _ = (order.id, order.slug);
    }
});
