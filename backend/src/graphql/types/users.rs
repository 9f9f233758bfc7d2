//! User accounts and their roles.

use super::money::MoneyObject;
use crate::accounts::users::User;
use crate::graphql::access;
use crate::graphql::context::ContextExt;
use crate::graphql::error::ApiResult;
use async_graphql::{Context, Enum, ID, Object};
use chrono::{DateTime, Utc};

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(remote = "p2pvps_shared::Role", name = "Role")]
pub enum RoleGql {
    Owner,
    Renter,
    Admin,
}

/// A user account. Only the user themself and admins ever receive one.
pub struct UserObject(pub User);

#[Object(name = "User")]
impl UserObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn role(&self) -> RoleGql {
        self.0.role.into()
    }
    async fn disabled(&self) -> bool {
        self.0.disabled
    }
    /// True for generated passwords: the user should choose a new one (`changePassword`).
    async fn must_change_password(&self) -> bool {
        self.0.must_change_password
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// What this user has earned as an owner, per currency: rental payments less the platform's fee,
    /// less refunds (from the ledger). The user and admins only.
    async fn earnings(&self, ctx: &Context<'_>) -> ApiResult<Vec<MoneyObject>> {
        access::may_read_earnings(ctx.viewer().user()?, &self.0)?;
        let rows = crate::billing::ledger::owner_earnings(&ctx.shared().pool, self.0.id).await?;
        Ok(rows
            .into_iter()
            .map(|(currency, minor)| MoneyObject { minor, currency })
            .collect())
    }
}
