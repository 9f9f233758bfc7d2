//! Devices: the credential shown once, validation per field, uniqueness, stable ports, deletion.

use p2pvps_server::devices;
use p2pvps_shared::Role;
use p2pvps_tests::{TestApp, add_device, rent};
use serde_json::json;
use sqlx::PgPool;

const CREATE: &str = "mutation($i: CreateDeviceInput!) { createDevice(input: $i) { credential device { id name tunnelPort subdomain forRent price { minor currency } hardware { cpuCores memoryMb } } } }";

#[sqlx::test(migrations = "../sql")]
async fn the_credential_appears_once_and_never_again(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let owner = app.user("o@example.com", Role::Owner).await;
    let (id, credential) = add_device(&owner, "kitchen pi").await;
    assert_eq!(credential.len(), 43);
    let uuid: uuid::Uuid = id.parse().unwrap();
    assert!(
        devices::tunnel_auth::tunnel_login_by_credential(&app.pool, uuid, &credential)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        devices::tunnel_auth::tunnel_login_by_credential(&app.pool, uuid, "guess")
            .await
            .unwrap()
            .is_none()
    );

    // Not readable through the API: the Device type has no such field ...
    let r = owner
        .gql(
            "query($id: ID!) { device(id: $id) { credential } }",
            json!({"id": id}),
        )
        .await;
    r.assert_code("BAD_USER_INPUT");
    let fields = owner
        .gql(
            "{ __type(name: \"Device\") { fields { name } } }",
            json!({}),
        )
        .await;
    let fields: Vec<String> = fields
        .ok()
        .data("__type.fields")
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_lowercase())
        .collect();
    assert!(fields.contains(&"subdomain".to_owned()), "{fields:?}");
    assert!(
        !fields.iter().any(|f| f.contains("credential")),
        "{fields:?}"
    );
    // ... nor stored: only its hash, and it is in no audit entry.
    let raw: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE encode(credential_hash, 'escape') LIKE '%' || $1 || '%'")
        .bind(&credential)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(raw, 0);
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE detail::text LIKE '%' || $1 || '%'",
    )
    .bind(&credential)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(audited, 0);

    // Rotation: a new one, shown once; the old one stops working.
    let r = owner
        .gql(
            "mutation($id: ID!) { rotateDeviceCredential(id: $id) { credential } }",
            json!({"id": id}),
        )
        .await;
    let rotated = r
        .ok()
        .data("rotateDeviceCredential.credential")
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(rotated, credential);
    assert!(
        devices::tunnel_auth::tunnel_login_by_credential(&app.pool, uuid, &credential)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        devices::tunnel_auth::tunnel_login_by_credential(&app.pool, uuid, &rotated)
            .await
            .unwrap()
            .is_some()
    );
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn create_device_validates_each_field(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let owner = app.user("o@example.com", Role::Owner).await;
    let r = owner
        .gql(
            CREATE,
            json!({"i": {"name": "  ", "subdomain": "-bad-", "price": {"minor": -3, "currency": "USD"}, "rentalHours": 0}}),
        )
        .await;
    r.assert_code("BAD_USER_INPUT");
    let fields = &r.body["errors"][0]["extensions"]["fields"];
    for f in ["name", "subdomain", "price", "rentalHours"] {
        assert!(fields[f].is_string(), "{f} missing in {fields}");
    }
    let r = owner
        .gql(
            CREATE,
            json!({"i": {"name": "pi", "hardware": {"cpuCores": 0, "arch": "x".repeat(40)}}}),
        )
        .await;
    r.assert_code("BAD_USER_INPUT");
    let fields = &r.body["errors"][0]["extensions"]["fields"];
    assert!(
        fields["hardware.cpuCores"].is_string() && fields["hardware.arch"].is_string(),
        "{fields}"
    );
    let r = owner
        .gql(CREATE, json!({"i": {"name": "pi", "forRent": true}}))
        .await;
    r.assert_code("BAD_USER_INPUT");
    assert_eq!(r.field(), Some("price"));
    let r = owner.gql(CREATE, json!({"i": {"name": 42}})).await;
    r.assert_code("BAD_USER_INPUT");

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM devices")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0, "nothing half-written");
    let audit: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action LIKE 'device.%'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(audit, 0);

    let r = owner
        .gql(
            CREATE,
            json!({"i": {"name": " Pi 4 ", "subdomain": "My-Pi", "forRent": true, "price": {"minor": 300, "currency": "usd"}, "hardware": {"cpuCores": 4, "memoryMb": 4096}}}),
        )
        .await;
    r.ok();
    assert_eq!(r.data("createDevice.device.name"), "Pi 4");
    assert_eq!(r.data("createDevice.device.subdomain"), "my-pi");
    assert_eq!(r.data("createDevice.device.price.currency"), "USD");
    assert_eq!(r.data("createDevice.device.hardware.memoryMb"), 4096);
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn names_are_unique_per_owner_and_subdomains_globally(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let a = app.user("a@example.com", Role::Owner).await;
    let b = app.user("b@example.com", Role::Owner).await;
    a.gql(CREATE, json!({"i": {"name": "pi", "subdomain": "alpha"}}))
        .await
        .ok();
    let dup = a.gql(CREATE, json!({"i": {"name": "pi"}})).await;
    dup.assert_code("CONFLICT");
    assert_eq!(dup.field(), Some("name"));
    b.gql(CREATE, json!({"i": {"name": "pi"}})).await.ok();
    let taken = b
        .gql(
            CREATE,
            json!({"i": {"name": "other", "subdomain": "ALPHA"}}),
        )
        .await;
    taken.assert_code("CONFLICT");
    assert_eq!(taken.field(), Some("subdomain"));

    // Renaming onto an existing name is refused too, and changes nothing.
    let (second, _) = add_device(&a, "second").await;
    let r = a
        .gql("mutation($id: ID!) { updateDevice(id: $id, input: {name: \"pi\", description: \"x\"}) { name } }", json!({"id": second}))
        .await;
    r.assert_code("CONFLICT");
    let desc: String = sqlx::query_scalar("SELECT description FROM devices WHERE id = $1::uuid")
        .bind(&second)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(desc, "");
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn ports_are_the_lowest_free_in_range_and_freed_on_delete(pool: PgPool) {
    let app = TestApp::start_with(pool, |s| s.tunnel_ports = 7000..=7002).await;
    let owner = app.user("o@example.com", Role::Owner).await;
    let port = |name: &'static str| {
        let owner = owner.clone();
        async move {
            let r = owner.gql(CREATE, json!({"i": {"name": name}})).await;
            (
                r.data("createDevice.device.id").as_str().map(str::to_owned),
                r,
            )
        }
    };
    let (a, ra) = port("a").await;
    let (_, rb) = port("b").await;
    let (_, rc) = port("c").await;
    let got: Vec<_> = [&ra, &rb, &rc]
        .iter()
        .map(|r| r.data("createDevice.device.tunnelPort").as_i64().unwrap())
        .collect();
    assert_eq!(got, vec![7000, 7001, 7002]);
    let (_, full) = port("d").await;
    full.assert_code("CONFLICT");
    assert!(
        full.message().contains("no free tunnel port"),
        "{}",
        full.message()
    );

    owner
        .gql(
            "mutation($id: ID!) { deleteDevice(id: $id) }",
            json!({"id": a}),
        )
        .await
        .ok();
    let (_, re) = port("e").await;
    assert_eq!(
        re.data("createDevice.device.tunnelPort"),
        7000,
        "a deleted device's port is reused"
    );
    // The deleted device is gone from the API.
    owner
        .gql(
            "query($id: ID!) { device(id: $id) { id } }",
            json!({"id": a}),
        )
        .await
        .assert_code("NOT_FOUND");
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn delete_is_refused_while_rented(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let owner = app.user("o@example.com", Role::Owner).await;
    app.user("r@example.com", Role::Renter).await;
    let (id, _) = add_device(&owner, "pi").await;
    let (idle, _) = add_device(&owner, "idle pi").await;
    let rental = rent(&app.pool, &app.secrets, &id, "r@example.com", "renter9").await;
    // The list says which one is rented (batched for the whole page).
    let list = owner
        .gql("{ devices { nodes { id rented } } }", json!({}))
        .await;
    let rented: std::collections::HashMap<String, bool> = list
        .ok()
        .data("devices.nodes")
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_owned(),
                n["rented"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(rented.get(&id), Some(&true));
    assert_eq!(rented.get(&idle), Some(&false));
    let r = owner
        .gql(
            "mutation($id: ID!) { deleteDevice(id: $id) }",
            json!({"id": id}),
        )
        .await;
    r.assert_code("CONFLICT");
    sqlx::query("UPDATE rentals SET state = 'ended' WHERE id = $1")
        .bind(rental)
        .execute(&app.pool)
        .await
        .unwrap();
    owner
        .gql(
            "mutation($id: ID!) { deleteDevice(id: $id) }",
            json!({"id": id}),
        )
        .await
        .ok();
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn devices_page_and_filter_by_status(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let owner = app.user("o@example.com", Role::Owner).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(add_device(&owner, &format!("pi {i}")).await.0);
    }
    devices::status::record_status(
        &app.pool,
        ids[1].parse().unwrap(),
        p2pvps_shared::DeviceStatus::Online,
    )
    .await
    .unwrap();
    let q = "query($s: DeviceStatus, $f: Int, $a: String) { devices(status: $s, first: $f, after: $a) { pageInfo { hasNextPage endCursor } edges { node { id status } } } }";
    let r = owner.gql(q, json!({"f": 2})).await;
    r.ok();
    assert_eq!(r.data("devices.pageInfo.hasNextPage"), true);
    let mut seen: Vec<String> = Vec::new();
    let mut after = r.data("devices.pageInfo.endCursor").clone();
    seen.extend(
        r.data("devices.edges")
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_owned()),
    );
    loop {
        let r = owner.gql(q, json!({"f": 2, "a": after})).await;
        seen.extend(
            r.ok()
                .data("devices.edges")
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"]["id"].as_str().unwrap().to_owned()),
        );
        if r.data("devices.pageInfo.hasNextPage") == false {
            break;
        }
        after = r.data("devices.pageInfo.endCursor").clone();
    }
    assert_eq!(seen, ids, "every device once, in creation order");
    let online = owner.gql(q, json!({"s": "ONLINE"})).await;
    assert_eq!(online.data("devices.edges").as_array().unwrap().len(), 1);
    assert_eq!(online.data("devices.edges.0.node.id"), ids[1].as_str());
    owner
        .gql(q, json!({"a": "garbage"}))
        .await
        .assert_code("BAD_USER_INPUT");
    owner
        .gql(q, json!({"f": 1000}))
        .await
        .assert_code("BAD_USER_INPUT");
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn uptime_comes_from_the_status_history(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let owner = app.user("o@example.com", Role::Owner).await;
    let (id, _) = add_device(&owner, "pi").await;
    // A device created 30 h ago: online for the 6 h up to 24 h ago, then 6 h offline, then online since
    // 18 h ago except for the last 6 h.
    sqlx::query(
        "UPDATE device_status_history SET at = now() - interval '30 hours' WHERE device_id = $1::uuid",
    )
    .bind(&id)
    .execute(&app.pool)
    .await
    .unwrap();
    for (status, hours_ago) in [
        ("online", 30),
        ("offline", 24),
        ("online", 18),
        ("offline", 6),
    ] {
        sqlx::query(
            "INSERT INTO device_status_history (device_id, status, at) \
             VALUES ($1::uuid, $2, now() - make_interval(hours => $3))",
        )
        .bind(&id)
        .bind(status)
        .bind(hours_ago)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    let q = "query($id: ID!, $h: Int!) { device(id: $id) { uptime(hours: $h) { onlineFraction spans { status from to } } } }";
    let day = owner.gql(q, json!({"id": id, "h": 24})).await;
    let spans = day
        .ok()
        .data("device.uptime.spans")
        .as_array()
        .unwrap()
        .clone();
    let statuses: Vec<&str> = spans
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["OFFLINE", "ONLINE", "OFFLINE"], "{spans:?}");
    let fraction = day.data("device.uptime.onlineFraction").as_f64().unwrap();
    assert!((fraction - 0.5).abs() < 0.001, "{fraction}");
    for pair in spans.windows(2) {
        assert_eq!(pair[0]["to"], pair[1]["from"], "spans are consecutive");
    }

    // A device created an hour ago is judged on that hour, not on the day before it existed.
    let (new_id, _) = add_device(&owner, "new pi").await;
    sqlx::query("UPDATE device_status_history SET at = now() - interval '1 hour' WHERE device_id = $1::uuid")
        .bind(&new_id)
        .execute(&app.pool)
        .await
        .unwrap();
    devices::status::record_status(
        &app.pool,
        new_id.parse().unwrap(),
        p2pvps_shared::DeviceStatus::Online,
    )
    .await
    .unwrap();
    let fresh = owner.gql(q, json!({"id": new_id, "h": 24})).await;
    let fraction = fresh
        .ok()
        .data("device.uptime.onlineFraction")
        .as_f64()
        .unwrap();
    assert!(fraction < 0.01, "{fraction}");
    assert_eq!(fresh.data("device.uptime.spans.0.status"), "NEW");

    owner
        .gql(q, json!({"id": id, "h": 0}))
        .await
        .assert_code("BAD_USER_INPUT");
    let stranger = app.user("s@example.com", Role::Owner).await;
    stranger
        .gql(q, json!({"id": id, "h": 24}))
        .await
        .assert_code("NOT_FOUND");
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn the_tunnel_server_is_described_for_connect_commands(pool: PgPool) {
    let data = p2pvps_tests::temp_dir("p2pvps-data-");
    let app = TestApp::start_with_ssh(pool, data.path(), 0).await;
    let owner = app.user("o@example.com", Role::Owner).await;
    let r = owner
        .gql(
            "{ tunnelServer { host port hostKeyFingerprint knownHostsLine } }",
            json!({}),
        )
        .await;
    r.ok();
    let port = app.ssh_addr().port();
    assert_eq!(r.data("tunnelServer.port"), port);
    assert_eq!(r.data("tunnelServer.host"), "127.0.0.1");
    assert!(
        r.data("tunnelServer.hostKeyFingerprint")
            .as_str()
            .unwrap()
            .starts_with("SHA256:")
    );
    let key = p2pvps_server::ssh::host_key::load_or_create(data.path()).unwrap();
    assert_eq!(
        r.data("tunnelServer.knownHostsLine"),
        format!(
            "[127.0.0.1]:{port} {}",
            p2pvps_server::ssh::host_key::public_openssh(&key)
        )
        .as_str()
    );
    app.anonymous()
        .gql("{ tunnelServer { host } }", json!({}))
        .await
        .assert_code("UNAUTHENTICATED");
    app.stop().await;
    drop(data);
}
