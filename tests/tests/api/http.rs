//! The HTTP surface: bad requests, limits, health, metrics, static files and GraphiQL.

use p2pvps_shared::Role;
use p2pvps_tests::TestApp;
use serde_json::{Value, json};
use sqlx::PgPool;

#[sqlx::test(migrations = "../sql")]
async fn malformed_and_oversized_bodies_get_clear_errors(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>| {
        http.post(app.url("/graphql"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let r = post(b"{\"query\": ".to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not a GraphQL request")
    );

    let big = format!(
        "{{\"query\": \"{{ me {{ id }} }}\", \"variables\": {{\"pad\": \"{}\"}}}}",
        "x".repeat(1_100_000)
    );
    let r = post(big.into_bytes()).await.unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("1 MiB")
    );

    // A form post (text/plain) is refused: that is how cross-site request forgery would arrive.
    let r = http
        .post(app.url("/graphql"))
        .header("content-type", "text/plain")
        .body("{\"query\": \"{ me { id } }\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("application/json")
    );

    let anon = app.anonymous();
    let r = anon.gql("{ me { id ", json!({})).await;
    r.assert_code("BAD_USER_INPUT");
    let r = anon.gql("{ nope }", json!({})).await;
    r.assert_code("BAD_USER_INPUT");
    assert!(r.message().contains("nope"), "{}", r.message());
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn deep_queries_are_refused(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let admin = app.user("a@example.com", Role::Admin).await;
    // rentals → device → owner → ... is bounded by the depth limit.
    let mut q = String::from("id");
    for _ in 0..12 {
        q = format!(
            "__typename ofType: __type(name: \"Device\") {{ name fields {{ type {{ {q} }} }} }}"
        );
    }
    let r = admin.gql(&format!("{{ {q} }}"), json!({})).await;
    r.assert_code("BAD_USER_INPUT");
    assert!(
        r.message().to_lowercase().contains("depth"),
        "{}",
        r.message()
    );
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn costly_queries_are_refused_and_introspection_is_not(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let anon = app.anonymous();
    // The query GraphiQL, Altair, Insomnia and graphql-codegen send to read the schema.
    let r = anon
        .gql(
            include_str!("../../../backend/src/graphql/introspection.graphql"),
            json!({}),
        )
        .await;
    r.ok();
    let types = r.data("__schema.types").as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "Offer"));
    // One list of a hundred offers each with its uptime spans, under 140 aliases: refused unrun.
    let one = |i: usize| {
        format!("o{i}: offers(first: 100) {{ uptime(hours: 720) {{ spans {{ status }} }} }} ")
    };
    let r = anon.gql(&format!("{{ {} }}", one(0)), json!({})).await;
    r.assert_code("BAD_USER_INPUT");
    assert!(r.message().contains("too expensive"), "{}", r.message());
    let aliased: String = (0..140).map(one).collect();
    anon.gql(&format!("{{ {aliased} }}"), json!({}))
        .await
        .assert_code("BAD_USER_INPUT");
    let cheap: String = (0..140)
        .map(|i| format!("o{i}: offers(first: 1) {{ id }} "))
        .collect();
    let r = anon.gql(&format!("{{ {cheap} }}"), json!({})).await;
    assert!(r.message().contains("root fields"), "{}", r.message());
    let names: String = (0..40).map(|i| format!("n{i}: name ")).collect();
    let r = anon
        .gql(&format!("{{ offers(first: 1) {{ {names} }} }}"), json!({}))
        .await;
    assert!(r.message().contains("aliases"), "{}", r.message());
    // Fifty aliased sign-ups are refused before any is hashed or stored.
    let signups: String = (0..50)
        .map(|i| {
            format!(
                "s{i}: signUp(input: {{email: \"u{i}@example.com\", password: \"long enough pw\", role: OWNER}}) {{ user {{ id }} }} "
            )
        })
        .collect();
    let r = anon
        .gql(&format!("mutation {{ {signups} }}"), json!({}))
        .await;
    r.assert_code("BAD_USER_INPUT");
    assert!(r.message().contains("one per request"), "{}", r.message());
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(users, 0);
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn healthz_and_metrics(pool: PgPool) {
    let app = TestApp::start(pool).await;
    let r = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["database"], "ok");

    // Names the server does not know count as `other` (a client cannot grow the label set).
    app.anonymous()
        .gql("query Probe { me { id } }", json!({}))
        .await
        .ok();
    app.anonymous()
        .gql("query Denied { devices { edges { cursor } } }", json!({}))
        .await;
    let text = app.metrics().await;
    assert!(
        text.contains("p2pvps_graphql_operations_total{operation=\"other\",outcome=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "p2pvps_graphql_operations_total{operation=\"other\",outcome=\"UNAUTHENTICATED\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "p2pvps_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("p2pvps_db_pool_connections "), "{text}");
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn metrics_are_on_the_metrics_listener_and_on_the_main_port_only_with_the_token(
    pool: PgPool,
) {
    // No token configured: the main port has no /metrics; the metrics listener has it, and nothing else.
    let app = TestApp::start(pool.clone()).await;
    let r = reqwest::get(app.url("/metrics")).await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(!r.text().await.unwrap().contains("p2pvps_"));
    assert!(app.metrics().await.contains("p2pvps_db_pool_connections "));
    let elsewhere = app.metrics_url().replace("/metrics", "/graphql");
    assert_eq!(reqwest::get(elsewhere).await.unwrap().status(), 404);
    app.stop().await;

    // With a token: 401 without it or with another, the figures with it.
    let app = TestApp::start_with(pool, |s| {
        s.metrics_token = Some("scrape-token-0123456789".to_owned())
    })
    .await;
    let http = reqwest::Client::new();
    let r = http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = http
        .get(app.url("/metrics"))
        .bearer_auth("scrape-token-012345678")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(!r.text().await.unwrap().contains("p2pvps_"));
    let r = http
        .get(app.url("/metrics"))
        .bearer_auth("scrape-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("p2pvps_db_pool_connections ")
    );
    assert!(app.metrics().await.contains("p2pvps_db_pool_connections "));
    app.stop().await;
}

#[sqlx::test(migrations = "../sql")]
async fn dashboard_files_and_spa_fallback(pool: PgPool) {
    let dir = p2pvps_tests::temp_dir("p2pvps-web-");
    std::fs::create_dir_all(dir.path().join("graphiql")).unwrap();
    std::fs::write(dir.path().join("index.html"), "<html>the app</html>").unwrap();
    std::fs::write(
        dir.path().join("p2pvps-web-0123456789abcdef_bg.wasm"),
        b"\0asm",
    )
    .unwrap();
    let web = dir.path().to_owned();
    let app = TestApp::start_with(pool, move |s| s.web_dir = Some(web)).await;

    let r = reqwest::get(app.url("/devices/42")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-cache");
    assert_eq!(r.text().await.unwrap(), "<html>the app</html>");

    let r = reqwest::get(app.url("/p2pvps-web-0123456789abcdef_bg.wasm"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/wasm");
    assert!(
        r.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );

    let r = reqwest::get(app.url("/p2pvps-web-ffffffffffffffff_bg.wasm"))
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        404,
        "a missing asset is not answered with index.html"
    );

    let r = reqwest::get(app.url("/graphql")).await.unwrap();
    let page = r.text().await.unwrap();
    assert!(
        page.contains("src=\"/graphiql/graphiql.min.js\""),
        "GraphiQL's assets are ours"
    );
    assert!(
        !page.contains("://cdn") && !page.contains("unpkg") && !page.contains("jsdelivr"),
        "no CDN"
    );
    app.stop().await;
    dir.close().unwrap();
}

/// The real dashboard build (`cargo xtask test` makes one): served, with GraphiQL's assets.
#[sqlx::test(migrations = "../sql")]
async fn the_built_dashboard_is_served(pool: PgPool) {
    let dir = p2pvps_tests::web_dir();
    let app = TestApp::start_with(pool, move |s| s.web_dir = Some(dir)).await;
    let index = reqwest::get(app.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let wasm = index
        .split(['"', '\''])
        .find(|s| s.ends_with(".wasm"))
        .expect("index.html references the wasm module")
        .to_owned();
    let r = reqwest::get(app.url(&format!("/{}", wasm.trim_start_matches('/'))))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/wasm");
    for asset in [
        "graphiql.min.js",
        "graphiql.min.css",
        "react.production.min.js",
        "react-dom.production.min.js",
    ] {
        let r = reqwest::get(app.url(&format!("/graphiql/{asset}")))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
    }
    app.stop().await;
}
