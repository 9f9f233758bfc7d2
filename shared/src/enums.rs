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

impl RentalState {
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
}
