//! What every resolver knows: the shared server state and who is asking. What the viewer may do is decided
//! in `access`.

use crate::app::state::Shared;

use super::error::{ApiError, ApiResult};
use crate::accounts::users::User;
use crate::infra::audit::Actor;
use async_graphql::Context;
use std::net::IpAddr;
use std::sync::Arc;

/// How the request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    None,
    Cookie(String),
    Bearer(String),
}

/// The requester: a user (or nobody), the token used, and the client address.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: Option<User>,
    pub credential: Credential,
    pub address: IpAddr,
}

impl Viewer {
    pub fn user(&self) -> ApiResult<&User> {
        self.user.as_ref().ok_or_else(ApiError::unauthenticated)
    }

    pub fn actor(&self) -> ApiResult<Actor> {
        let user = self.user()?;
        Ok(Actor::user(user.id, &user.email))
    }
}

pub trait ContextExt {
    fn shared(&self) -> &Arc<Shared>;
    fn viewer(&self) -> &Viewer;
}

impl ContextExt for Context<'_> {
    fn shared(&self) -> &Arc<Shared> {
        // Both are inserted by the HTTP layer for every request; a schema built without them is a bug.
        self.data_unchecked::<Arc<Shared>>()
    }

    fn viewer(&self) -> &Viewer {
        self.data_unchecked::<Viewer>()
    }
}
