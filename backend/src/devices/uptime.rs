//! A device's uptime from its status history: the spans of each status over a window, and the time it
//! was not online during a rental (for the offline-time refund).

use crate::infra::db::decode_enum;
use chrono::{DateTime, Utc};
use p2pvps_shared::DeviceStatus;
use sqlx::PgPool;
use uuid::Uuid;

/// How long the device was not online between `from` and `to`, from its status history (time before its
/// first recorded status is not counted).
pub async fn offline_during(
    conn: &mut sqlx::PgConnection,
    device: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<chrono::Duration, sqlx::Error> {
    let ms: i64 = sqlx::query_scalar!("WITH changes AS ( \
           (SELECT status, at FROM device_status_history WHERE device_id = $1 AND at <= $2 \
            ORDER BY at DESC, id DESC LIMIT 1) \
           UNION ALL \
           (SELECT status, at FROM device_status_history WHERE device_id = $1 AND at > $2 AND at < $3) \
         ), spans AS ( \
           SELECT status, GREATEST(at, $2) AS f, LEAST(COALESCE(lead(at) OVER (ORDER BY at), $3), $3) AS t \
           FROM changes \
         ) \
         SELECT COALESCE(sum(EXTRACT(EPOCH FROM (t - f)) * 1000) FILTER (WHERE status <> 'online' AND t > f), 0)::bigint AS \"ms!\" \
         FROM spans", device, from, to)
    .fetch_one(conn)
    .await?;
    Ok(chrono::Duration::milliseconds(ms))
}

/// One stretch of a device's connection status, clipped to the window asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSpan {
    pub status: DeviceStatus,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

/// The device's status over `[since, now]` as consecutive spans, from its status history. A device created
/// within the window has spans from its creation on (time before it existed is not downtime).
pub async fn status_spans(
    pool: &PgPool,
    device: Uuid,
    since: DateTime<Utc>,
) -> Result<Vec<StatusSpan>, sqlx::Error> {
    let rows: Vec<(String, DateTime<Utc>, DateTime<Utc>)> = sqlx::query!(
        "WITH changes AS ( \
           (SELECT status, at FROM device_status_history WHERE device_id = $1 AND at <= $2 \
            ORDER BY at DESC, id DESC LIMIT 1) \
           UNION ALL \
           (SELECT status, at FROM device_status_history WHERE device_id = $1 AND at > $2) \
         ) \
         SELECT status AS \"status!\", at AS \"at!\", now() AS \"now!\" FROM changes ORDER BY at",
        device,
        since
    )
    .map(|r| (r.status, r.at, r.now))
    .fetch_all(pool)
    .await?;
    let now = rows.first().map_or_else(Utc::now, |r| r.2);
    let mut spans: Vec<StatusSpan> = Vec::with_capacity(rows.len());
    for (text, at, _) in &rows {
        let status = decode_enum(DeviceStatus::from_db(text), "status", text)?;
        let from = (*at).clamp(since, now);
        if let Some(last) = spans.last_mut() {
            last.to = from;
        }
        spans.push(StatusSpan {
            status,
            from,
            to: now,
        });
    }
    spans.retain(|s| s.to > s.from);
    Ok(spans)
}
