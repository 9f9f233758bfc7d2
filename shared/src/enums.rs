//! Enumerations that the API exposes and the database stores (as lower-case text with a CHECK constraint).

use serde::{Deserialize, Serialize};

macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($(#[$vmeta])* $variant),+ }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),+];

            /// The spelling stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn from_db(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// What a user may do. Owners register devices, renters rent them, admins see and manage everything.
    Role {
        Owner => "owner",
        Renter => "renter",
        Admin => "admin",
    }
}

text_enum! {
    /// A device's connection state as last observed by the tunnel server.
    DeviceStatus {
        /// Registered but never connected.
        New => "new",
        Online => "online",
        Offline => "offline",
    }
}

text_enum! {
    /// A rental's place in its lifecycle: ordered → paid → provisioning → active → ending → ended.
    RentalState {
        Ordered => "ordered",
        Paid => "paid",
        Provisioning => "provisioning",
        Active => "active",
        Ending => "ending",
        Ended => "ended",
        Refunded => "refunded",
        Cancelled => "cancelled",
    }
}

text_enum! {
    /// How far a device agent's hook (run when a rental starts or ends) has got.
    HookStatus {
        /// Waiting for the device's agent to run it.
        Pending => "pending",
        Done => "done",
        Failed => "failed",
    }
}

text_enum! {
    /// Which of the owner's hooks the agent runs: `start` makes the renter's access on the device,
    /// `end` removes it.
    HookAction {
        Start => "start",
        End => "end",
    }
}

impl RentalState {
    /// The lifecycle: ordered → paid → provisioning → active → ending → ended, with refunded and cancelled
    /// as the other ends. Every change of a rental's state goes through this check.
    pub fn may_become(self, next: Self) -> bool {
        use RentalState::*;
        matches!(
            (self, next),
            (Ordered, Paid | Cancelled)
                | (Paid, Provisioning | Refunded | Cancelled)
                | (Provisioning, Active | Refunded)
                | (Active, Ending | Refunded)
                | (Ending, Ended)
        )
    }

    /// No change leaves these.
    pub fn is_final(self) -> bool {
        Self::ALL.iter().all(|next| !self.may_become(*next))
    }

    /// States in which the device is taken: it cannot be deleted or rented to someone else.
    pub fn holds_device(self) -> bool {
        matches!(
            self,
            Self::Paid | Self::Provisioning | Self::Active | Self::Ending
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_spelling_round_trips() {
        for r in Role::ALL {
            assert_eq!(Role::from_db(r.as_str()), Some(*r));
        }
        for s in RentalState::ALL {
            assert_eq!(RentalState::from_db(s.as_str()), Some(*s));
        }
        assert_eq!(DeviceStatus::from_db("bogus"), None);
    }

    #[test]
    fn the_rental_lifecycle_moves_forward_only() {
        use RentalState::*;
        let happy = [Ordered, Paid, Provisioning, Active, Ending, Ended];
        for pair in happy.windows(2) {
            assert!(
                pair[0].may_become(pair[1]),
                "{:?} -> {:?}",
                pair[0],
                pair[1]
            );
            assert!(
                !pair[1].may_become(pair[0]),
                "{:?} -> {:?}",
                pair[1],
                pair[0]
            );
        }
        for s in RentalState::ALL {
            assert!(!s.may_become(*s), "{s:?} -> itself");
        }
        let finals: Vec<_> = RentalState::ALL.iter().filter(|s| s.is_final()).collect();
        assert_eq!(finals, [&Ended, &Refunded, &Cancelled]);
        assert!(
            !Active.may_become(Cancelled),
            "a started rental is refunded, not cancelled"
        );
        // Every state that holds the device can still be left.
        assert!(
            RentalState::ALL
                .iter()
                .filter(|s| s.holds_device())
                .all(|s| !s.is_final())
        );
    }
}
