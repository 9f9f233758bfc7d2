//! The gateway's Host/authority routing: any header value is answered (a route or a refusal), and a
//! route to a site names one DNS label in lower case.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2pvps_server::gateway::host::{Route, route};

fuzz_target!(|data: &[u8]| {
    let Ok(authority) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(Route::Site(label)) = route(authority, "p2pvps.example") {
        assert!((1..=63).contains(&label.len()), "{label:?}");
        assert!(
            label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "{label:?}"
        );
    }
});
