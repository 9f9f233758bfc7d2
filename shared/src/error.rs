//! The one error every parser in this crate returns.

/// Why a value was refused, in words a user can act on.
///
/// `field` is the input's name as the GraphQL API spells it, so the dashboard can put the message next to the
/// right form field and the server can report it in `extensions.field`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }

    /// The same error reported against another input name (a rule reused for a differently named field).
    pub fn for_field(mut self, field: &'static str) -> Self {
        self.field = field;
        self
    }
}
