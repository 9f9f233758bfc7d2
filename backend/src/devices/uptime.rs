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
        // Not `clamp`: it panics when the database's clock is behind `since`.
        let from = (*at).max(since).min(now);
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

#[cfg(test)]
mod tests {
    use super::{StatusSpan, offline_during, status_spans};
    use crate::infra::testing;
    use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
    use p2pvps_shared::{DeviceStatus, Role};
    use sqlx::PgPool;
    use uuid::Uuid;

    /// A device whose whole status history is `changes` (status, when).
    async fn device_with_history(pool: &PgPool, changes: &[(&str, DateTime<Utc>)]) -> Uuid {
        let owner = format!("owner-{}", Uuid::new_v4().simple());
        let owner = testing::user(pool, &owner, Role::Owner).await;
        let (device, _) = testing::device(pool, owner.id, "pi").await;
        sqlx::query("DELETE FROM device_status_history WHERE device_id = $1")
            .bind(device.id)
            .execute(pool)
            .await
            .unwrap();
        for (status, at) in changes {
            sqlx::query(
                "INSERT INTO device_status_history (device_id, status, at) VALUES ($1, $2, $3)",
            )
            .bind(device.id)
            .bind(status)
            .bind(at)
            .execute(pool)
            .await
            .unwrap();
        }
        device.id
    }

    fn hours(h: f64) -> TimeDelta {
        TimeDelta::seconds((h * 3600.0) as i64)
    }

    #[sqlx::test(migrations = "../sql")]
    async fn offline_time_counts_every_span_not_online_within_the_window(pool: PgPool) {
        let t0 = Utc::now().trunc_subsecs(6) - hours(10.0);
        let device = device_with_history(
            &pool,
            &[
                ("online", t0),
                ("offline", t0 + hours(1.0)),
                ("online", t0 + hours(2.0)),
                ("new", t0 + hours(3.0)),
                ("online", t0 + hours(3.5)),
                ("offline", t0 + hours(4.0)),
            ],
        )
        .await;
        let mut conn = pool.acquire().await.unwrap();
        let mut during = async |from: f64, to: f64| {
            offline_during(&mut conn, device, t0 + hours(from), t0 + hours(to))
                .await
                .unwrap()
        };
        // 1-2 h offline, 3-3.5 h not yet online again, 4-5 h offline.
        assert_eq!(during(0.5, 5.0).await, hours(2.5));
        assert_eq!(
            during(1.25, 1.75).await,
            hours(0.5),
            "inside one offline span"
        );
        assert_eq!(
            during(2.0, 3.0).await,
            TimeDelta::zero(),
            "online throughout"
        );
        assert_eq!(
            during(-2.0, 1.0).await,
            TimeDelta::zero(),
            "time before the first recorded status is not downtime"
        );
    }

    #[sqlx::test(migrations = "../sql")]
    async fn status_spans_cover_the_window_from_the_status_at_its_start(pool: PgPool) {
        let now = Utc::now().trunc_subsecs(6);
        let device = device_with_history(
            &pool,
            &[
                ("online", now - hours(5.0)),
                ("offline", now - hours(2.0)),
                ("online", now - hours(1.0)),
            ],
        )
        .await;
        let since = now - hours(3.0);
        let spans = status_spans(&pool, device, since).await.unwrap();
        assert_eq!(spans.len(), 3, "{spans:?}");
        assert_eq!(
            spans[..2],
            [
                StatusSpan {
                    status: DeviceStatus::Online,
                    from: since,
                    to: now - hours(2.0),
                },
                StatusSpan {
                    status: DeviceStatus::Offline,
                    from: now - hours(2.0),
                    to: now - hours(1.0),
                },
            ]
        );
        assert_eq!(spans[2].status, DeviceStatus::Online);
        assert_eq!(spans[2].from, now - hours(1.0));
        assert!(spans[2].to >= now, "the last span runs until now");
    }

    #[sqlx::test(migrations = "../sql")]
    async fn a_device_created_within_the_window_has_no_span_before_it_existed(pool: PgPool) {
        let now = Utc::now().trunc_subsecs(6);
        let device = device_with_history(
            &pool,
            &[("new", now - hours(1.0)), ("online", now - hours(0.5))],
        )
        .await;
        let spans = status_spans(&pool, device, now - hours(3.0)).await.unwrap();
        let shape: Vec<_> = spans.iter().map(|s| (s.status, s.from)).collect();
        assert_eq!(
            shape,
            [
                (DeviceStatus::New, now - hours(1.0)),
                (DeviceStatus::Online, now - hours(0.5)),
            ]
        );
        assert_eq!(spans[0].to, spans[1].from, "the spans are consecutive");
        let none = device_with_history(&pool, &[]).await;
        assert!(status_spans(&pool, none, now).await.unwrap().is_empty());
    }
}
