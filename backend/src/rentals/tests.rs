//! The rental rules that need no database: the lifecycle's moves and what a rental grants.

use super::{Rental, RentalError, check_move};
use crate::infra::crypto::SecretBox;
use chrono::{TimeDelta, Utc};
use p2pvps_shared::{HookStatus, Money, RentalState};
use uuid::Uuid;

/// A rental as the lifecycle leaves it after `activate`, without hooks.
fn rental(state: RentalState, ends_in: Option<TimeDelta>) -> Rental {
    let now = Utc::now();
    Rental {
        id: Uuid::new_v4(),
        device_id: Uuid::new_v4(),
        renter_id: Some(Uuid::new_v4()),
        marketplace: "direct".to_owned(),
        order_ref: "order".to_owned(),
        state,
        price: Money::price(300, "USD").unwrap(),
        starts_at: Some(now - TimeDelta::hours(1)),
        ends_at: ends_in.map(|d| now + d),
        login_name: Some("rabcdefghi".to_owned()),
        login_secret_enc: None,
        device_password_enc: None,
        created_at: now,
        start_hook: None,
        end_hook: None,
        hook_message: None,
    }
}

#[test]
fn only_the_lifecycles_moves_are_allowed_and_every_other_is_a_bad_move() {
    use RentalState::*;
    // The lifecycle as documented: ordered → paid → provisioning → active → ending → ended, an order
    // may be cancelled until it is started, a paid rental refunded until it ends.
    let allowed = [
        (Ordered, Paid),
        (Ordered, Cancelled),
        (Paid, Provisioning),
        (Paid, Refunded),
        (Paid, Cancelled),
        (Provisioning, Active),
        (Provisioning, Refunded),
        (Active, Ending),
        (Active, Refunded),
        (Ending, Ended),
    ];
    let mut refused = 0;
    for &from in RentalState::ALL {
        for &to in RentalState::ALL {
            match check_move(from, to) {
                Ok(()) => assert!(
                    allowed.contains(&(from, to)),
                    "{from} -> {to} is allowed but not in the lifecycle"
                ),
                Err(RentalError::BadMove { from: f, to: t }) => {
                    assert!(!allowed.contains(&(from, to)), "{from} -> {to} is refused");
                    assert_eq!((f, t), (from, to), "the error names the move refused");
                    refused += 1;
                }
                Err(other) => panic!("{from} -> {to}: {other}"),
            }
        }
    }
    let all = RentalState::ALL.len() * RentalState::ALL.len();
    assert_eq!(refused, all - allowed.len());
}

#[test]
fn a_finished_rental_cannot_be_moved_anywhere() {
    for from in [
        RentalState::Ended,
        RentalState::Refunded,
        RentalState::Cancelled,
    ] {
        for &to in RentalState::ALL {
            assert!(
                matches!(check_move(from, to), Err(RentalError::BadMove { .. })),
                "{from} -> {to}"
            );
        }
    }
}

#[test]
fn access_is_ready_without_a_start_hook_or_once_it_succeeded() {
    let mut r = rental(RentalState::Active, Some(TimeDelta::hours(1)));
    assert!(r.access_ready(), "no hook to wait for");
    r.start_hook = Some(HookStatus::Done);
    assert!(r.access_ready());
    r.start_hook = Some(HookStatus::Pending);
    assert!(!r.access_ready(), "the device has not made the account yet");
    r.start_hook = Some(HookStatus::Failed);
    assert!(!r.access_ready(), "a failed hook means broken access");
}

#[test]
fn a_rental_runs_only_while_active_and_before_its_end() {
    let hour = TimeDelta::hours(1);
    assert!(rental(RentalState::Active, Some(hour)).is_running());
    assert!(
        !rental(RentalState::Active, Some(-hour)).is_running(),
        "over"
    );
    assert!(!rental(RentalState::Active, None).is_running(), "no end");
    for state in RentalState::ALL
        .iter()
        .filter(|s| **s != RentalState::Active)
    {
        assert!(!rental(*state, Some(hour)).is_running(), "{state}");
    }
}

#[test]
fn the_device_password_is_given_only_where_a_start_hook_makes_it() {
    let key = SecretBox::generate();
    let mut r = rental(RentalState::Active, Some(TimeDelta::hours(1)));
    r.login_secret_enc = Some(key.seal(b"jump secret"));
    r.device_password_enc = Some(key.seal(b"device password"));
    assert_eq!(
        r.device_password(&key).unwrap(),
        None,
        "a device without hooks makes no account, so there is no password to show"
    );
    assert_eq!(
        r.login_secret(&key).unwrap().as_deref(),
        Some("jump secret")
    );
    r.start_hook = Some(HookStatus::Pending);
    assert_eq!(
        r.device_password(&key).unwrap().as_deref(),
        Some("device password")
    );
    // A rental from before device passwords: its hook was given the jump secret.
    r.device_password_enc = None;
    assert_eq!(
        r.device_password(&key).unwrap().as_deref(),
        Some("jump secret")
    );
    r.login_secret_enc = None;
    assert_eq!(r.device_password(&key).unwrap(), None);
}

#[test]
fn a_secret_sealed_with_another_key_is_an_error_not_a_password() {
    let key = SecretBox::generate();
    let mut r = rental(RentalState::Active, Some(TimeDelta::hours(1)));
    r.start_hook = Some(HookStatus::Done);
    r.device_password_enc = Some(SecretBox::generate().seal(b"device password"));
    assert!(r.device_password(&key).is_err());
}
