//! The authorisation matrix: anonymous / owner / other owner / renter / admin × every query and mutation,
//! and field by field where what a viewer may read differs.

use p2pvps_shared::Role;
use p2pvps_tests::{Client, Gql, TestApp, add_device, rent};
use serde_json::{Value, json};
use sqlx::PgPool;

/// What a viewer gets: data, or an error with this code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    Err(&'static str),
}
use Expect::{Err as E, Ok as OK};

struct World {
    app: TestApp,
    anon: Client,
    owner: Client,
    other: Client,
    renter: Client,
    admin: Client,
    device: String,
    other_device: String,
    owner_id: String,
    renter_id: String,
}

impl World {
    async fn new(pool: PgPool) -> Self {
        let app = TestApp::start(pool).await;
        let owner = app.user("owner@example.com", Role::Owner).await;
        let other = app.user("other@example.com", Role::Owner).await;
        let renter = app.user("renter@example.com", Role::Renter).await;
        let admin = app.user("admin@example.com", Role::Admin).await;
        let (device, _) = add_device(&owner, "rented pi").await;
        let (other_device, _) = add_device(&other, "other pi").await;
        rent(
            &app.pool,
            &app.secrets,
            &device,
            "renter@example.com",
            "renter1",
        )
        .await;
        let id = |c: &Client| {
            let c = c.clone();
            async move {
                c.gql("{ me { id } }", json!({}))
                    .await
                    .data("me.id")
                    .as_str()
                    .unwrap()
                    .to_owned()
            }
        };
        let owner_id = id(&owner).await;
        let renter_id = id(&renter).await;
        Self {
            anon: app.anonymous(),
            app,
            owner,
            other,
            renter,
            admin,
            device,
            other_device,
            owner_id,
            renter_id,
        }
    }

    fn viewers(&self) -> [(&'static str, &Client); 5] {
        [
            ("anonymous", &self.anon),
            ("owner", &self.owner),
            ("other owner", &self.other),
            ("renter", &self.renter),
            ("admin", &self.admin),
        ]
    }

    /// Runs `query` as each viewer and checks each outcome; returns the responses in viewer order.
    async fn check(&self, what: &str, query: &str, vars: Value, expected: [Expect; 5]) -> Vec<Gql> {
        let mut out = Vec::new();
        for ((who, client), want) in self.viewers().into_iter().zip(expected) {
            let r = client.gql(query, vars.clone()).await;
            match want {
                OK => assert!(
                    r.body.get("errors").is_none() && !r.body["data"].is_null(),
                    "{what} as {who}: expected data, got {}",
                    r.body
                ),
                E(code) => assert_eq!(
                    r.code(),
                    Some(code),
                    "{what} as {who}: expected {code}, got {}",
                    r.body
                ),
            }
            out.push(r);
        }
        out
    }
}

#[sqlx::test(migrations = "../sql")]
async fn queries(pool: PgPool) {
    let w = World::new(pool).await;
    let d = json!({"id": w.device});

    let me = w
        .check("me", "{ me { id email role } }", json!({}), [OK; 5])
        .await;
    assert!(me[0].data("me").is_null());
    assert_eq!(me[1].data("me.email"), "owner@example.com");
    assert_eq!(me[4].data("me.role"), "ADMIN");

    let q = "{ devices { edges { node { id name } } } }";
    let r = w
        .check(
            "devices",
            q,
            json!({}),
            [E("UNAUTHENTICATED"), OK, OK, OK, OK],
        )
        .await;
    let ids = |g: &Gql| -> Vec<String> {
        g.data("devices.edges")
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(&r[1]),
        vec![w.device.clone()],
        "owner sees only their own"
    );
    assert_eq!(
        ids(&r[2]),
        vec![w.other_device.clone()],
        "other owner sees only theirs"
    );
    assert_eq!(
        ids(&r[3]),
        vec![w.device.clone()],
        "renter sees the rented device"
    );
    assert_eq!(ids(&r[4]).len(), 2, "admin sees all");

    // Fields every viewer of the device may read.
    for field in [
        "id",
        "name",
        "description",
        "status",
        "lastSeen",
        "tunnelPort",
        "subdomain",
        "rentalHours",
        "rented",
        "price { minor }",
        "hardware { cpuCores }",
    ] {
        let q = format!("query($id: ID!) {{ device(id: $id) {{ {field} }} }}");
        w.check(
            &format!("device.{field}"),
            &q,
            d.clone(),
            [E("UNAUTHENTICATED"), OK, E("NOT_FOUND"), OK, OK],
        )
        .await;
    }
    // Owner's business: not for the renter.
    for field in [
        "forRent",
        "owner { email }",
        "createdAt",
        "updatedAt",
        "sshKeys { fingerprint }",
    ] {
        let q = format!("query($id: ID!) {{ device(id: $id) {{ {field} }} }}");
        w.check(
            &format!("device.{field}"),
            &q,
            d.clone(),
            [E("UNAUTHENTICATED"), OK, E("NOT_FOUND"), E("FORBIDDEN"), OK],
        )
        .await;
    }

    let q = "{ rentals { id state device { id } } }";
    let r = w
        .check(
            "rentals",
            q,
            json!({}),
            [E("UNAUTHENTICATED"), OK, OK, OK, OK],
        )
        .await;
    assert_eq!(
        r[1].data("rentals").as_array().unwrap().len(),
        1,
        "owner sees rentals of their devices"
    );
    assert_eq!(r[2].data("rentals").as_array().unwrap().len(), 0);
    assert_eq!(r[3].data("rentals.0.device.id"), w.device.as_str());
    assert_eq!(r[4].data("rentals").as_array().unwrap().len(), 1);

    let q = "{ rentals { login { name secret } } }";
    let r = w
        .check(
            "rentals.login",
            q,
            json!({}),
            [E("UNAUTHENTICATED"), E("FORBIDDEN"), OK, OK, E("FORBIDDEN")],
        )
        .await;
    assert_eq!(r[3].data("rentals.0.login.name"), "renter1");
    assert_eq!(r[3].data("rentals.0.login.secret"), "renter-secret");

    let admin_only = [
        E("UNAUTHENTICATED"),
        E("FORBIDDEN"),
        E("FORBIDDEN"),
        E("FORBIDDEN"),
        OK,
    ];
    let r = w
        .check(
            "users",
            "{ users { edges { node { email role disabled } } } }",
            json!({}),
            admin_only,
        )
        .await;
    assert_eq!(r[4].data("users.edges").as_array().unwrap().len(), 4);
    let r = w
        .check(
            "auditLog",
            "{ auditLog { action actor targetId } }",
            json!({}),
            admin_only,
        )
        .await;
    let actions: Vec<&str> = r[4]
        .data("auditLog")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert!(
        actions.contains(&"device.create") && actions.contains(&"user.create"),
        "{actions:?}"
    );
    w.app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn device_mutations(pool: PgPool) {
    let w = World::new(pool).await;
    let d = json!({"id": w.device, "i": {"description": "now with a fan"}});

    let upd = "mutation($id: ID!, $i: UpdateDeviceInput!) { updateDevice(id: $id, input: $i) { description } }";
    w.check(
        "updateDevice",
        upd,
        d.clone(),
        [E("UNAUTHENTICATED"), OK, E("NOT_FOUND"), E("FORBIDDEN"), OK],
    )
    .await;

    let rot = "mutation($id: ID!) { rotateDeviceCredential(id: $id) { credential } }";
    let r = w
        .check(
            "rotateDeviceCredential",
            rot,
            d.clone(),
            [E("UNAUTHENTICATED"), OK, E("NOT_FOUND"), E("FORBIDDEN"), OK],
        )
        .await;
    assert_ne!(
        r[1].data("rotateDeviceCredential.credential"),
        r[4].data("rotateDeviceCredential.credential")
    );

    // Rented: even the owner and the admin cannot delete it.
    let del = "mutation($id: ID!) { deleteDevice(id: $id) }";
    let r = w
        .check(
            "deleteDevice (rented)",
            del,
            d.clone(),
            [
                E("UNAUTHENTICATED"),
                E("CONFLICT"),
                E("NOT_FOUND"),
                E("FORBIDDEN"),
                E("CONFLICT"),
            ],
        )
        .await;
    assert!(
        r[1].message().contains("rented until"),
        "{}",
        r[1].message()
    );

    let create =
        "mutation { createDevice(input: {name: \"new one\"}) { device { id } credential } }";
    let r = w
        .check(
            "createDevice",
            create,
            json!({}),
            [E("UNAUTHENTICATED"), OK, OK, E("FORBIDDEN"), OK],
        )
        .await;
    let fresh = r[1]
        .data("createDevice.device.id")
        .as_str()
        .unwrap()
        .to_owned();
    let d = json!({"id": fresh});
    w.check(
        "deleteDevice",
        del,
        d.clone(),
        [
            E("UNAUTHENTICATED"),
            OK,
            E("NOT_FOUND"),
            E("NOT_FOUND"),
            E("NOT_FOUND"),
        ],
    )
    .await;
    w.app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn user_mutations(pool: PgPool) {
    let w = World::new(pool).await;
    let admin_only = [
        E("UNAUTHENTICATED"),
        E("FORBIDDEN"),
        E("FORBIDDEN"),
        E("FORBIDDEN"),
        OK,
    ];
    let role = "mutation($u: ID!) { setUserRole(userId: $u, role: OWNER) { role } }";
    let r = w
        .check("setUserRole", role, json!({"u": w.renter_id}), admin_only)
        .await;
    assert_eq!(r[4].data("setUserRole.role"), "OWNER");
    let dis = "mutation($u: ID!) { disableUser(userId: $u, disabled: false) { disabled } }";
    w.check("disableUser", dis, json!({"u": w.owner_id}), admin_only)
        .await;

    // An admin cannot lock themself out.
    let admin_id = w
        .admin
        .gql("{ me { id } }", json!({}))
        .await
        .data("me.id")
        .as_str()
        .unwrap()
        .to_owned();
    w.admin
        .gql(role, json!({"u": admin_id}))
        .await
        .assert_code("FORBIDDEN");
    w.admin
        .gql(dis, json!({"u": admin_id}))
        .await
        .assert_code("FORBIDDEN");
    w.admin
        .gql(dis, json!({"u": uuid::Uuid::new_v4().to_string()}))
        .await
        .assert_code("NOT_FOUND");

    let grant = "mutation($d: ID!) { grantRental(device: $d, renterEmail: \"renter@example.com\", hours: 1) { id } }";
    let r = w
        .check(
            "grantRental",
            grant,
            json!({"d": w.other_device}),
            admin_only,
        )
        .await;
    let rental = r[4].data("grantRental.id").as_str().unwrap().to_owned();
    let conn = "{ rentals { connection { login } } }";
    w.check(
        "rentals.connection",
        conn,
        json!({}),
        [E("UNAUTHENTICATED"), E("FORBIDDEN"), E("FORBIDDEN"), OK, OK],
    )
    .await;
    let end = "mutation($r: ID!) { endRental(id: $r) { state } }";
    w.check("endRental", end, json!({"r": rental}), admin_only)
        .await;

    let pw = "mutation { changePassword(currentPassword: \"x\", newPassword: \"long enough password\") { id } }";
    let anon = w.anon.gql(pw, json!({})).await;
    anon.assert_code("UNAUTHENTICATED");
    let out = w.anon.gql("mutation { logOut }", json!({})).await;
    assert_eq!(out.ok().data("logOut"), false, "nothing to end");
    w.app.stop().await;
}
