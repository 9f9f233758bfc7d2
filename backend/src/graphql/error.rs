//! The API's error: a code in `extensions.code` and a message that says what to fix.
//!
//! Resolvers return [`ApiResult`]; every domain error converts into an [`ApiError`] here, in one place, so
//! no resolver can leak an internal message (a database error is logged and answered as INTERNAL).
//! `ApiError` deliberately does not implement `Display`: that keeps async-graphql's blanket
//! `From<impl Display>` (which would drop the code) from applying to it.

use crate::accounts::users::UserError;
use crate::devices::DeviceError;
use crate::infra::crypto::CryptoError;
use p2pvps_shared::ValidationError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unauthenticated,
    Forbidden,
    NotFound,
    BadUserInput,
    Conflict,
    RateLimited,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::NotFound => "NOT_FOUND",
            Code::BadUserInput => "BAD_USER_INPUT",
            Code::Conflict => "CONFLICT",
            Code::RateLimited => "RATE_LIMITED",
            Code::Internal => "INTERNAL",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: Code,
    pub message: String,
    /// Per-field problems (input field name, message); the first also goes to `extensions.field`.
    pub fields: Vec<(String, String)>,
    pub retry_after_secs: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            fields: Vec::new(),
            retry_after_secs: None,
        }
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            Code::Unauthenticated,
            "sign in first (or your session has expired)",
        )
    }

    pub fn forbidden(what: &str) -> Self {
        Self::new(Code::Forbidden, format!("you are not allowed to {what}"))
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            Code::NotFound,
            format!("no such {what}, or it is not yours"),
        )
    }

    /// RATE_LIMITED, with `retryAfterSeconds`.
    pub fn rate_limited(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(Code::RateLimited, message);
        e.retry_after_secs = Some(retry_after_secs);
        e
    }

    pub fn conflict(field: Option<&str>, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut e = Self::new(Code::Conflict, message.clone());
        if let Some(f) = field {
            e.fields.push((f.to_owned(), message));
        }
        e
    }

    /// One BAD_USER_INPUT error listing every invalid field.
    pub fn invalid(errors: Vec<ValidationError>) -> Self {
        let message = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Self {
            code: Code::BadUserInput,
            message,
            fields: errors
                .into_iter()
                .map(|e| (e.field.to_owned(), e.message))
                .collect(),
            retry_after_secs: None,
        }
    }

    pub fn internal(context: &str, cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "{context}");
        Self::new(
            Code::Internal,
            "internal error; it has been logged, try again later",
        )
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(e: ApiError) -> Self {
        let mut error = async_graphql::Error::new(e.message);
        let mut ext = async_graphql::ErrorExtensionValues::default();
        ext.set("code", e.code.as_str());
        if let Some((field, _)) = e.fields.first() {
            ext.set("field", field.as_str());
        }
        if !e.fields.is_empty() {
            let fields: async_graphql::indexmap::IndexMap<
                async_graphql::Name,
                async_graphql::Value,
            > = e
                .fields
                .into_iter()
                .map(|(f, m)| (async_graphql::Name::new(f), async_graphql::Value::String(m)))
                .collect();
            ext.set("fields", async_graphql::Value::Object(fields));
        }
        if let Some(secs) = e.retry_after_secs {
            ext.set("retryAfterSeconds", secs);
        }
        error.extensions = Some(ext);
        error
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::invalid(vec![e])
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal("database error", &e)
    }
}

/// What a DataLoader shares among the fields it answered.
impl From<std::sync::Arc<sqlx::Error>> for ApiError {
    fn from(e: std::sync::Arc<sqlx::Error>) -> Self {
        Self::internal("database error", &*e)
    }
}

impl From<CryptoError> for ApiError {
    fn from(e: CryptoError) -> Self {
        Self::internal("crypto error", &e)
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::EmailTaken => Self::conflict(Some("email"), e.to_string()),
            UserError::NotFound => Self::not_found("user"),
            UserError::SelfChange => Self::new(Code::Forbidden, e.to_string()),
            UserError::Crypto(c) => c.into(),
            UserError::Db(d) => d.into(),
        }
    }
}

impl From<DeviceError> for ApiError {
    fn from(e: DeviceError) -> Self {
        match e {
            DeviceError::NameTaken(_) => Self::conflict(Some("name"), e.to_string()),
            DeviceError::SubdomainTaken(_) => Self::conflict(Some("subdomain"), e.to_string()),
            DeviceError::Rented(_) | DeviceError::Ordered => Self::conflict(None, e.to_string()),
            DeviceError::NoFreePort(..) => Self::conflict(None, e.to_string()),
            DeviceError::ForRentWithoutPrice => {
                Self::invalid(vec![ValidationError::new("price", e.to_string())])
            }
            DeviceError::NotFound => Self::not_found("device"),
            DeviceError::BadKey(_) => {
                Self::invalid(vec![ValidationError::new("publicKey", e.to_string())])
            }
            DeviceError::KeyExists => Self::conflict(Some("publicKey"), e.to_string()),
            DeviceError::NoSuchKey => Self::not_found("key"),
            DeviceError::Db(d) => d.into(),
        }
    }
}

impl From<crate::rentals::RentalError> for ApiError {
    fn from(e: crate::rentals::RentalError) -> Self {
        use crate::rentals::RentalError as R;
        match e {
            R::NoDevice => Self::not_found("device"),
            R::NoRenter => Self::invalid(vec![ValidationError::new(
                "renterEmail",
                "no user has this e-mail",
            )]),
            R::AlreadyRented
            | R::CleaningUp
            | R::NotActive
            | R::BadMove { .. }
            | R::NotForRent
            | R::Offline
            | R::Reserved => Self::conflict(None, e.to_string()),
            R::OwnDevice => Self::new(Code::Forbidden, "you cannot rent your own device"),
            R::NotFound => Self::not_found("rental"),
            R::BadHours => Self::invalid(vec![ValidationError::new(
                "hours",
                "must be between 1 and 8760",
            )]),
            R::Db(d) | R::Ledger(crate::billing::ledger::LedgerError::Db(d)) => d.into(),
            R::Ledger(crate::billing::ledger::LedgerError::Zero) => {
                Self::conflict(None, e.to_string())
            }
            R::Crypto(c) => c.into(),
        }
    }
}

impl From<crate::billing::storefront::StorefrontError> for ApiError {
    fn from(e: crate::billing::storefront::StorefrontError) -> Self {
        use crate::billing::payments::PaymentError as P;
        use crate::billing::storefront::StorefrontError as S;
        match e {
            S::Rental(r) => r.into(),
            S::NotOpen(_)
            | S::NotAnOrder
            | S::NotByHand(_)
            | S::WrongAmount { .. }
            | S::PaymentWaiting
            | S::TooManyUnpaid { .. }
            | S::NotRenewable => Self::conflict(None, e.to_string()),
            S::Payment(P::Db(d)) | S::Db(d) => d.into(),
            S::Payment(p) => Self::internal("payment provider", &p),
        }
    }
}

/// Collects the results of several field parsers: all values, or one error naming every bad field.
#[macro_export]
macro_rules! all_valid {
    ($($name:ident),+ $(,)?) => {
        match ($($name,)+) {
            ($(Ok($name),)+) => Ok(($($name,)+)),
            ($($name,)+) => Err($crate::graphql::error::ApiError::invalid(
                [$($name.err()),+].into_iter().flatten().collect(),
            )),
        }
    };
}

/// Errors raised by async-graphql itself (parse errors, unknown fields, depth and complexity limits, input
/// coercion) carry no code; they are all the client's to fix.
pub fn add_missing_codes(response: &mut async_graphql::Response) {
    for error in &mut response.errors {
        let ext = error.extensions.get_or_insert_with(Default::default);
        if ext.get("code").is_none() {
            ext.set("code", Code::BadUserInput.as_str());
        }
    }
}
