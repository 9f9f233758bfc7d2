//! The database's own guarantees: migrations re-run cleanly, and constraints hold whatever the code does.

use p2pvps_server::infra::db::MIGRATOR;
use sqlx::PgPool;

#[sqlx::test(migrations = false)]
async fn migrations_are_idempotent(pool: PgPool) {
    MIGRATOR.run(&pool).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    let again: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, again);
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied, MIGRATOR.iter().count() as i64);
}

#[sqlx::test(migrations = "../sql")]
async fn constraints_refuse_bad_rows(pool: PgPool) {
    let bad = [
        "INSERT INTO users (id, email, password_hash, role) VALUES (gen_random_uuid(), 'Upper@Example.com', '$argon2id$x', 'owner')",
        "INSERT INTO users (id, email, password_hash, role) VALUES (gen_random_uuid(), 'a@example.com', 'plaintext', 'owner')",
        "INSERT INTO users (id, email, password_hash, role) VALUES (gen_random_uuid(), 'a@example.com', '$argon2id$x', 'root')",
        "INSERT INTO ledger_entries (txn_id, account, amount_minor, currency) VALUES (gen_random_uuid(), 'platform', 0, 'USD')",
    ];
    for sql in bad {
        assert!(
            sqlx::query(sql).execute(&pool).await.is_err(),
            "accepted: {sql}"
        );
    }

    // An unbalanced ledger transaction fails at commit; a balanced one commits.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO ledger_entries (txn_id, account, amount_minor, currency) VALUES ('00000000-0000-0000-0000-000000000001', 'platform', 5, 'USD')")
        .execute(&mut *tx)
        .await
        .unwrap();
    assert!(
        tx.commit().await.is_err(),
        "unbalanced ledger transaction committed"
    );
    let mut tx = pool.begin().await.unwrap();
    for (account, amount) in [("platform", 5), ("marketplace:direct", -5)] {
        sqlx::query("INSERT INTO ledger_entries (txn_id, account, amount_minor, currency) VALUES ('00000000-0000-0000-0000-000000000002', $1, $2, 'USD')")
            .bind(account)
            .bind(amount as i64)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    // Append-only.
    assert!(
        sqlx::query("UPDATE ledger_entries SET memo = 'x'")
            .execute(&pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM ledger_entries")
            .execute(&pool)
            .await
            .is_err()
    );
    sqlx::query("INSERT INTO audit_log (actor_label, action, target_type, target_id) VALUES ('t', 'x.y', 't', '1')")
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        sqlx::query("UPDATE audit_log SET action = 'z.z'")
            .execute(&pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query("DELETE FROM audit_log")
            .execute(&pool)
            .await
            .is_err()
    );
}
