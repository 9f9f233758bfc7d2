//! The schema's object types, one file per area: thin wrappers over domain rows. An object that shows
//! different fields to different viewers carries the viewer's access (`super::access`) and asks it, field
//! by field, what may be shown.

pub mod audit;
pub mod devices;
pub mod market;
pub mod money;
pub mod rentals;
pub mod users;
