//! GraphQL over HTTP: one typed operation per `.graphql` file in `queries/`, checked at compile time against
//! the server's `schema.graphql`. The session travels as the same-origin cookie.

use graphql_client::{GraphQLQuery, Response};
use std::collections::BTreeMap;

/// Scalars of the schema, as the generated code names them.
pub type DateTime = String;
#[allow(clippy::upper_case_acronyms)]
pub type JSON = serde_json::Value;

macro_rules! operation {
    ($name:ident, $file:tt) => {
        #[derive(GraphQLQuery)]
        #[graphql(
                                                            schema_path = "../schema.graphql",
                                                            query_path = $file,
                                                            response_derives = "Clone, PartialEq",
                                                            variables_derives = "Clone"
                                                        )]
        pub struct $name;
    };
}

operation!(Me, "queries/me.graphql");
operation!(LogIn, "queries/log_in.graphql");
operation!(SignUp, "queries/sign_up.graphql");
operation!(LogOut, "queries/log_out.graphql");
operation!(ChangePassword, "queries/change_password.graphql");
operation!(Devices, "queries/devices.graphql");
operation!(Device, "queries/device.graphql");
operation!(TunnelServerInfo, "queries/tunnel_server.graphql");
operation!(CreateDevice, "queries/create_device.graphql");
operation!(RotateCredential, "queries/rotate_credential.graphql");
operation!(DeleteDevice, "queries/delete_device.graphql");
operation!(SetWebPublishing, "queries/set_web_publishing.graphql");
operation!(AddSshKey, "queries/add_ssh_key.graphql");
operation!(RemoveSshKey, "queries/remove_ssh_key.graphql");
operation!(MyRentals, "queries/my_rentals.graphql");
operation!(AllRentals, "queries/all_rentals.graphql");
operation!(Users, "queries/users.graphql");
operation!(SetUserRole, "queries/set_user_role.graphql");
operation!(DisableUser, "queries/disable_user.graphql");
operation!(AuditLog, "queries/audit_log.graphql");
operation!(DeviceStatusChanged, "queries/device_status_changed.graphql");
operation!(RentalChanged, "queries/rental_changed.graphql");
operation!(Offers, "queries/offers.graphql");
operation!(OrderRental, "queries/order_rental.graphql");
operation!(ConfirmPayment, "queries/confirm_payment.graphql");
operation!(CancelOrder, "queries/cancel_order.graphql");
operation!(ClaimRental, "queries/claim_rental.graphql");
operation!(RenewRental, "queries/renew_rental.graphql");
operation!(PlatformEarnings, "queries/platform_earnings.graphql");
operation!(RetryProvisioning, "queries/retry_provisioning.graphql");

/// What went wrong with a request, in terms the page can show.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The server could not be reached (or answered something that is not GraphQL).
    Network(String),
    /// The server refused: its code (`BAD_USER_INPUT`, `CONFLICT`...), message and per-field messages.
    Refused {
        code: String,
        message: String,
        fields: BTreeMap<String, String>,
    },
}

impl ApiError {
    pub fn message(&self) -> String {
        match self {
            ApiError::Network(m) => format!("Cannot reach the server: {m}"),
            ApiError::Refused { message, .. } => capitalise(message),
        }
    }

    /// The message for one input field, if the server named that field.
    pub fn field(&self, name: &str) -> Option<String> {
        match self {
            ApiError::Refused { fields, .. } => fields.get(name).map(|m| capitalise(m)),
            ApiError::Network(_) => None,
        }
    }

    pub fn code(&self) -> &str {
        match self {
            ApiError::Network(_) => "NETWORK",
            ApiError::Refused { code, .. } => code,
        }
    }
}

pub fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Runs one operation. The first GraphQL error becomes the result, so a page never renders half an answer.
/// Only the decoding is generic: the request itself is one function for every operation (smaller wasm).
pub async fn run<Q: GraphQLQuery>(variables: Q::Variables) -> Result<Q::ResponseData, ApiError> {
    let body = serde_json::to_string(&Q::build_query(variables))
        .map_err(|e| ApiError::Network(e.to_string()))?;
    let data = post(body).await?;
    serde_json::from_value(data).map_err(|e| ApiError::Network(format!("unexpected answer: {e}")))
}

/// Runs an operation whose answer the page does not read (it reloads instead): only errors matter, so no
/// decoder is generated for its answer (smaller wasm).
pub async fn send<Q: GraphQLQuery>(variables: Q::Variables) -> Result<(), ApiError> {
    let body = serde_json::to_string(&Q::build_query(variables))
        .map_err(|e| ApiError::Network(e.to_string()))?;
    post(body).await.map(|_| ())
}

/// POSTs a GraphQL request body; returns its `data`, or its first error.
async fn post(body: String) -> Result<serde_json::Value, ApiError> {
    let response = gloo_net::http::Request::post("/graphql")
        .header("Content-Type", "application/json")
        .body(body)
        .map_err(|e| ApiError::Network(e.to_string()))?
        .send()
        .await
        .map_err(|e| ApiError::Network(e.to_string()))?;
    let status = response.status();
    let parsed: Response<serde_json::Value> = response
        .json()
        .await
        .map_err(|_| ApiError::Network(format!("unexpected answer (HTTP {status})")))?;
    if let Some(error) = parsed.errors.and_then(|e| e.into_iter().next()) {
        let ext = error.extensions.unwrap_or_default();
        let code = ext
            .get("code")
            .and_then(|c| c.as_str())
            .unwrap_or("INTERNAL")
            .to_owned();
        let fields = ext
            .get("fields")
            .and_then(|f| f.as_object())
            .map(|f| {
                f.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default();
        return Err(ApiError::Refused {
            code,
            message: error.message,
            fields,
        });
    }
    parsed
        .data
        .ok_or_else(|| ApiError::Network("an empty answer".to_owned()))
}
