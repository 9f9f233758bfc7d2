//! The connection pool and the embedded migrations.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, migrate::Migrator};
use std::str::FromStr;
use std::time::Duration;

/// The files of `sql/`, compiled into the binary so a deployment needs nothing else.
pub static MIGRATOR: Migrator = sqlx::migrate!("../sql");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no database configured: set DATABASE_URL or pass --database-url")]
    NoUrl,
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    BadUrl(sqlx::Error),
    #[error("cannot connect to the database: {0}")]
    Connect(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub async fn connect(url: Option<&str>) -> Result<PgPool, DbError> {
    let url = url.ok_or(DbError::NoUrl)?;
    let options = PgConnectOptions::from_str(url).map_err(DbError::BadUrl)?;
    PgPoolOptions::new()
        .max_connections(20)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .map_err(DbError::Connect)
}

/// Applies pending migrations. Safe to run concurrently from several instances (sqlx takes an advisory lock).
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// The name of the unique or check constraint a database error violated, if any.
pub fn violated_constraint(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

/// Maps a text column stored under a CHECK constraint back to its enum.
pub fn decode_enum<T>(value: Option<T>, column: &str, text: &str) -> Result<T, sqlx::Error> {
    value.ok_or_else(|| {
        sqlx::Error::Decode(format!("unexpected {column} `{text}` in the database").into())
    })
}

/// Rows a query macro read into a table's `...Row`, converted to the domain type.
pub fn typed<R, T: TryFrom<R, Error = sqlx::Error>>(rows: Vec<R>) -> Result<Vec<T>, sqlx::Error> {
    rows.into_iter().map(T::try_from).collect()
}

/// The row a query macro read into a table's `...Row`, if any, converted to the domain type.
pub fn typed_opt<R, T: TryFrom<R, Error = sqlx::Error>>(
    row: Option<R>,
) -> Result<Option<T>, sqlx::Error> {
    row.map(T::try_from).transpose()
}
