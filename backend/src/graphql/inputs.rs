//! What the API takes in: the input objects and argument enums, and their parsing into domain values with
//! the `p2pvps-shared` validators. Every invalid field is reported at once, named as the client sent it
//! (`hardware.cpuCores`), so a form shows each error next to its input.

use super::error::{ApiError, ApiResult};
use crate::all_valid;
use crate::devices::{DeviceChanges, NewDevice};
use async_graphql::{Enum, ID, InputObject};
use p2pvps_shared::{DeviceName, Hardware, Money, Role, SubdomainLabel, ValidationError};
use uuid::Uuid;

/// An object's id as a UUID, or a validation error on `field`.
pub fn parse_id(id: &ID, field: &'static str) -> ApiResult<Uuid> {
    Uuid::parse_str(id.as_str())
        .map_err(|_| ValidationError::new(field, "is not a valid id").into())
}

/// Whose side of rentals to read.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum RentalView {
    /// The viewer's own rentals, as renter.
    Renter,
    /// Rentals of the viewer's devices (every rental, for an admin).
    Owner,
}

/// Roles open to self sign-up (admins are made by admins).
#[derive(Enum, Copy, Clone, Eq, PartialEq, Default)]
pub enum SignUpRole {
    #[default]
    Owner,
    Renter,
}

impl From<SignUpRole> for Role {
    fn from(role: SignUpRole) -> Self {
        match role {
            SignUpRole::Owner => Role::Owner,
            SignUpRole::Renter => Role::Renter,
        }
    }
}

#[derive(InputObject)]
pub struct SignUpInput {
    pub email: String,
    pub password: String,
    #[graphql(default)]
    pub role: SignUpRole,
    /// Return a bearer token in the payload instead of setting the session cookie (for API clients).
    #[graphql(default)]
    pub bearer: bool,
}

#[derive(InputObject)]
pub struct LogInInput {
    pub email: String,
    pub password: String,
    /// Return a bearer token in the payload instead of setting the session cookie (for API clients).
    #[graphql(default)]
    pub bearer: bool,
}

#[derive(InputObject)]
pub struct HardwareInput {
    pub cpu_model: Option<String>,
    pub cpu_cores: Option<i32>,
    pub memory_mb: Option<i32>,
    pub disk_gb: Option<i32>,
    pub arch: Option<String>,
    pub internet_mbps: Option<i32>,
}

#[derive(InputObject)]
pub struct MoneyInput {
    /// Amount in the currency's smallest unit (cents, satoshis).
    pub minor: i64,
    pub currency: String,
}

#[derive(InputObject)]
pub struct CreateDeviceInput {
    pub name: String,
    /// Subdomain label; generated when omitted.
    pub subdomain: Option<String>,
    pub description: Option<String>,
    pub hardware: Option<HardwareInput>,
    /// Price of one rental period.
    pub price: Option<MoneyInput>,
    /// Length of one rental period in hours (default 24).
    pub rental_hours: Option<i32>,
    #[graphql(default)]
    pub for_rent: bool,
}

impl CreateDeviceInput {
    /// The device to register; hardware is checked once the other fields are valid.
    pub fn parse(self) -> ApiResult<NewDevice> {
        let name = DeviceName::parse(&self.name);
        let subdomain = self
            .subdomain
            .as_deref()
            .map(SubdomainLabel::parse)
            .transpose();
        let description = parse_description(self.description);
        let price = parse_price(self.price);
        let rental_hours = parse_rental_hours(self.rental_hours);
        let (name, subdomain, description, price, rental_hours) =
            all_valid!(name, subdomain, description, price, rental_hours)?;
        let hardware = self
            .hardware
            .map(parse_hardware)
            .transpose()?
            .unwrap_or_default();
        Ok(NewDevice {
            subdomain,
            description: description.unwrap_or_default(),
            hardware,
            price,
            rental_hours: rental_hours.unwrap_or(24),
            for_rent: self.for_rent,
            ..NewDevice::named(name)
        })
    }
}

/// Fields left out are not changed.
#[derive(InputObject)]
pub struct UpdateDeviceInput {
    pub name: Option<String>,
    pub description: Option<String>,
    pub hardware: Option<HardwareInput>,
    pub price: Option<MoneyInput>,
    pub rental_hours: Option<i32>,
    pub for_rent: Option<bool>,
    /// Publish the device's web server at its subdomain through the gateway (on by default).
    pub web_publishing: Option<bool>,
}

impl UpdateDeviceInput {
    /// The changes to make; hardware is checked once the other fields are valid.
    pub fn parse(self) -> ApiResult<DeviceChanges> {
        let name = self.name.as_deref().map(DeviceName::parse).transpose();
        let description = parse_description(self.description);
        let price = parse_price(self.price);
        let rental_hours = parse_rental_hours(self.rental_hours);
        let (name, description, price, rental_hours) =
            all_valid!(name, description, price, rental_hours)?;
        let hardware = self.hardware.map(parse_hardware).transpose()?;
        Ok(DeviceChanges {
            name,
            description,
            hardware,
            price,
            rental_hours,
            for_rent: self.for_rent,
            web_publishing: self.web_publishing,
        })
    }
}

/// The length of a rental granted by hand, in hours (1 to 8760).
pub fn parse_grant_hours(hours: i32) -> Result<i32, ValidationError> {
    if (1..=8760).contains(&hours) {
        Ok(hours)
    } else {
        Err(ValidationError::new("hours", "must be between 1 and 8760"))
    }
}

fn bounded(
    field: &'static str,
    value: Option<i32>,
    max: i32,
) -> Result<Option<i32>, ValidationError> {
    match value {
        Some(v) if !(1..=max).contains(&v) => Err(ValidationError::new(
            field,
            format!("must be between 1 and {max}"),
        )),
        v => Ok(v),
    }
}

fn parse_hardware(input: HardwareInput) -> Result<Hardware, ApiError> {
    let typed = Hardware {
        cpu_model: input.cpu_model,
        cpu_cores: input.cpu_cores,
        memory_mb: input.memory_mb,
        disk_gb: input.disk_gb,
        arch: input.arch,
        internet_mbps: input.internet_mbps,
    };
    typed.parse().map_err(|errors| {
        ApiError::invalid(
            errors
                .into_iter()
                .map(|e| ValidationError::new(hardware_field(e.field), e.message))
                .collect(),
        )
    })
}

/// A hardware fact's name inside the `hardware` input, as the form shows errors.
fn hardware_field(field: &'static str) -> &'static str {
    match field {
        "cpuModel" => "hardware.cpuModel",
        "cpuCores" => "hardware.cpuCores",
        "memoryMb" => "hardware.memoryMb",
        "diskGb" => "hardware.diskGb",
        "arch" => "hardware.arch",
        "internetMbps" => "hardware.internetMbps",
        other => other,
    }
}

fn parse_price(input: Option<MoneyInput>) -> Result<Option<Money>, ValidationError> {
    input
        .map(|m| Money::price(m.minor, &m.currency))
        .transpose()
}

fn parse_rental_hours(value: Option<i32>) -> Result<Option<i32>, ValidationError> {
    bounded("rentalHours", value, 8760)
}

fn parse_description(value: Option<String>) -> Result<Option<String>, ValidationError> {
    match value {
        Some(v) if v.chars().count() > 2000 => Err(ValidationError::new(
            "description",
            "must be at most 2000 characters",
        )),
        v => Ok(v.map(|v| v.trim().to_owned())),
    }
}
