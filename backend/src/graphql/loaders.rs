//! Batched lookups for fields that a list asks of every row (async-graphql's DataLoader): one query per
//! page instead of one per device.

use crate::{accounts::users, devices};
use async_graphql::dataloader::Loader;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use uuid::Uuid;

/// `Device.rented` for every device the response shows.
pub struct Rented(pub PgPool);

impl Loader<Uuid> for Rented {
    type Value = bool;
    type Error = Arc<sqlx::Error>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, bool>, Self::Error> {
        let rented = devices::renting::rented_among(&self.0, keys).await?;
        Ok(keys.iter().map(|k| (*k, rented.contains(k))).collect())
    }
}

/// `Device.owner` for every device the response shows.
pub struct Users(pub PgPool);

impl Loader<Uuid> for Users {
    type Value = users::User;
    type Error = Arc<sqlx::Error>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, users::User>, Self::Error> {
        let found = users::get_many(&self.0, keys).await?;
        Ok(found.into_iter().map(|u| (u.id, u)).collect())
    }
}
