//! `schema.graphql` at the repository root is what the server exports (the dashboard is typed against it).

#[test]
fn checked_in_schema_matches_the_server() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schema.graphql");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    let current = p2pvps_server::graphql::sdl();
    assert!(
        committed == current,
        "schema.graphql is stale: run `cargo run -q --bin p2pvps -- export-schema > schema.graphql` and commit it"
    );
}
