//! Properties of the shared validation rules and the rental lifecycle, over generated input: no input
//! panics a parser, whatever is accepted meets the database's constraints and reads back the same, money
//! never appears or vanishes, and the rental state machine only moves forward to an end.

use p2pvps_shared::agent::{AgentFacts, JobOutcome};
use p2pvps_shared::{
    Currency, DeviceName, Email, Hardware, Money, Password, RentalState, SubdomainLabel, split_fee,
};
use proptest::prelude::*;

/// Any text, biased toward the characters the rules care about.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-zA-Z0-9 ._@+-]{0,80}",
        "[ \t\n\u{0}\u{1b}a-z\u{e9}\u{1F600}-]{0,70}",
    ]
}

/// How far along the lifecycle a state is; every allowed move must go further.
fn rank(state: RentalState) -> u8 {
    use RentalState::*;
    match state {
        Ordered => 0,
        Paid => 1,
        Provisioning => 2,
        Active => 3,
        Ending => 4,
        Ended | Refunded | Cancelled => 5,
    }
}

proptest! {
    #[test]
    fn subdomains_are_dns_labels_and_read_back_the_same(input in text()) {
        if let Ok(label) = SubdomainLabel::parse(&input) {
            let s = label.as_str();
            prop_assert!((SubdomainLabel::MIN_LEN..=SubdomainLabel::MAX_LEN).contains(&s.len()));
            prop_assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            prop_assert!(!s.starts_with('-') && !s.ends_with('-'));
            prop_assert!(!SubdomainLabel::RESERVED.contains(&s));
            prop_assert_eq!(SubdomainLabel::parse(s).unwrap(), label.clone());
        }
    }

    #[test]
    fn device_names_are_bounded_printable_and_trimmed(input in text()) {
        if let Ok(name) = DeviceName::parse(&input) {
            let s = name.as_str();
            prop_assert!(!s.is_empty() && s.chars().count() <= DeviceName::MAX_CHARS);
            prop_assert!(!s.chars().any(char::is_control));
            prop_assert_eq!(s, s.trim());
            prop_assert_eq!(DeviceName::parse(s).unwrap().as_str().to_owned(), s.to_owned());
        }
    }

    #[test]
    fn emails_are_bounded_and_read_back_the_same(input in text()) {
        if let Ok(email) = Email::parse(&input) {
            let s = email.as_str();
            prop_assert!(s.len() <= Email::MAX_LEN && s.contains('@'));
            prop_assert_eq!(Email::parse(s).unwrap().as_str().to_owned(), s.to_owned());
        }
    }

    #[test]
    fn passwords_are_long_enough_and_bounded(input in text()) {
        if let Ok(p) = Password::parse(&input) {
            prop_assert!(p.expose().chars().count() >= Password::MIN_CHARS);
            prop_assert!(p.expose().len() <= Password::MAX_BYTES);
        }
    }

    #[test]
    fn prices_are_positive_and_their_notation_reads_back(
        minor in any::<i64>(),
        currency in prop_oneof![Just("USD".to_owned()), Just("BTC".to_owned()), "[A-Z]{2,6}"],
    ) {
        if let Ok(price) = Money::price(minor, &currency) {
            prop_assert!(price.minor > 0);
            // "3.50 USD" typed back into the dashboard's form is the same price.
            let shown = price.to_decimal_string();
            let (amount, code) = shown.split_once(' ').unwrap();
            prop_assert_eq!(Money::parse_price(amount, code).unwrap(), price);
        }
    }

    #[test]
    fn typed_prices_never_panic_and_stay_positive(amount in text(), currency in "[A-Z]{3}") {
        if let Ok(price) = Money::parse_price(&amount, &currency) {
            prop_assert!(price.minor > 0);
            prop_assert_eq!(price.currency, Currency::parse(&currency).unwrap());
        }
    }

    #[test]
    fn a_fee_and_its_earning_always_add_up(paid in any::<i64>(), bps in any::<u32>()) {
        let (fee, earning) = split_fee(paid, bps);
        prop_assert_eq!(i128::from(fee) + i128::from(earning), i128::from(paid));
        if paid >= 0 {
            prop_assert!(fee >= 0 && earning >= 0 && fee <= paid);
        }
    }

    #[test]
    fn the_rental_lifecycle_only_moves_forward_to_an_end(
        attempts in proptest::collection::vec(0..RentalState::ALL.len(), 0..20),
    ) {
        let mut state = RentalState::Ordered;
        for i in attempts {
            let next = RentalState::ALL[i];
            if state.may_become(next) {
                prop_assert!(rank(next) > rank(state), "{state} -> {next} goes back");
                prop_assert!(!state.is_final());
                state = next;
            }
        }
        // From wherever it stopped, some end is still reachable (nothing gets stuck).
        let mut frontier = vec![state];
        let mut reachable_end = state.is_final();
        while let Some(s) = frontier.pop() {
            for next in RentalState::ALL.iter().copied().filter(|n| s.may_become(*n)) {
                reachable_end |= next.is_final();
                frontier.push(next);
            }
        }
        prop_assert!(reachable_end);
    }

    #[test]
    fn accepted_facts_fit_the_database(
        cpu_model in proptest::option::of(text()),
        cpu_cores in proptest::option::of(any::<i32>()),
        memory_mb in proptest::option::of(any::<i32>()),
        disk_gb in proptest::option::of(any::<i32>()),
        arch in proptest::option::of(text()),
        os in proptest::option::of(text()),
        agent_version in text(),
    ) {
        let facts = AgentFacts {
            hardware: Hardware { cpu_model, cpu_cores, memory_mb, disk_gb, arch, internet_mbps: None },
            os, agent_version, hooks: false,
        };
        if let Ok(facts) = facts.parse() {
            let fits = |t: &Option<String>, max: usize| {
                t.as_ref().is_none_or(|t| t.chars().count() <= max && !t.chars().any(char::is_control))
            };
            let hw = &facts.hardware;
            prop_assert!(fits(&hw.cpu_model, 200) && fits(&hw.arch, 32) && fits(&facts.os, 200));
            prop_assert!(!facts.agent_version.is_empty() && fits(&Some(facts.agent_version.clone()), 50));
            for n in [hw.cpu_cores, hw.memory_mb, hw.disk_gb].into_iter().flatten() {
                prop_assert!(n >= 1);
            }
        }
    }

    #[test]
    fn accepted_hook_messages_fit_the_database(message in text()) {
        let outcome = JobOutcome { ok: false, message };
        if outcome.validate().is_ok() {
            prop_assert!(outcome.message.chars().count() <= JobOutcome::MAX_MESSAGE);
        }
    }
}
