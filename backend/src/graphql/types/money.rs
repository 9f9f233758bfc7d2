//! Amounts of money as the API shows them.

use async_graphql::SimpleObject;
use p2pvps_shared::Money;

/// An amount in the currency's smallest unit (cents, satoshis).
#[derive(SimpleObject)]
#[graphql(name = "Money")]
pub struct MoneyObject {
    pub minor: i64,
    pub currency: String,
}

impl From<&Money> for MoneyObject {
    fn from(m: &Money) -> Self {
        Self {
            minor: m.minor,
            currency: m.currency.as_str().to_owned(),
        }
    }
}
