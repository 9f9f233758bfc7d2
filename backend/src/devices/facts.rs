//! What a device's agent reports about its machine (hardware, OS, agent version, whether it runs the
//! owner's hooks), kept on the device's row and shown to its owner and renters.

/// Records the machine's facts as the device's agent reports them (they replace what the owner typed).
pub async fn record(
    pool: &sqlx::PgPool,
    id: uuid::Uuid,
    facts: &p2pvps_shared::agent::AgentFacts,
) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE devices SET cpu_model = $2, cpu_cores = $3, memory_mb = $4, disk_gb = $5, arch = $6, os = $7, \
         agent_version = $8, provisioner = $9, facts_reported_at = now(), updated_at = now() \
         WHERE id = $1 AND deleted_at IS NULL", id, facts.hardware.cpu_model.as_deref(), facts.hardware.cpu_cores, facts.hardware.memory_mb, facts.hardware.disk_gb, facts.hardware.arch.as_deref(), facts.os.as_deref(), &facts.agent_version, facts.hooks)
    .execute(pool)
    .await?;
    Ok(())
}
