//! The shared validation rules (server and dashboard alike) on any text: no panic, and what is accepted
//! reads back the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2pvps_shared::{DeviceName, Email, Money, Password, SubdomainLabel};

fuzz_target!(|input: (&str, &str)| {
    let (text, currency) = input;
    if let Ok(label) = SubdomainLabel::parse(text) {
        assert_eq!(SubdomainLabel::parse(label.as_str()).ok(), Some(label));
    }
    if let Ok(name) = DeviceName::parse(text) {
        assert_eq!(
            DeviceName::parse(name.as_str())
                .ok()
                .map(|n| n.as_str().to_owned()),
            Some(name.as_str().to_owned())
        );
    }
    if let Ok(email) = Email::parse(text) {
        assert_eq!(
            Email::parse(email.as_str())
                .ok()
                .map(|e| e.as_str().to_owned()),
            Some(email.as_str().to_owned())
        );
    }
    let _ = Password::parse(text);
    if let Ok(price) = Money::parse_price(text, currency) {
        assert!(price.minor > 0);
        let shown = price.to_decimal_string();
        let (amount, code) = shown.split_once(' ').expect("amount and code");
        assert_eq!(Money::parse_price(amount, code).ok(), Some(price));
    }
});
