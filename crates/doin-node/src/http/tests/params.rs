//! `POST /params` and `GET /params/{id}`: uploads stored under their hash, idempotent,
//! bounded per request (per domain) and in total, served back as raw bytes.

use axum::http::HeaderMap;
use doin_core::plugin::params_hash;

use super::*;

/// Sends one request and returns its status, headers and raw body.
async fn send_raw(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, headers, bytes.to_vec())
}

/// `POST uri` with raw bytes (with a `Content-Length`, as every HTTP client sends).
async fn upload(app: &Router, uri: &str, bytes: &[u8]) -> Reply {
    let req = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, bytes.len())
        .body(Body::from(bytes.to_vec()))
        .unwrap();
    send(app, req).await
}

/// `POST uri` with a streamed body of unknown length (chunked transfer).
async fn upload_streamed(app: &Router, uri: &str, bytes: &[u8]) -> Reply {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(100).map(|c| Ok(c.to_vec())).collect();
    let req = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    send(app, req).await
}

fn blob(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A test node whose `quadratic` takes at most 1,024-byte parameters, with a second domain
/// `big` that takes 4,096.
async fn small_limit_node() -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let mut params = ChainParams::dev(CHAIN);
    params.domains[0].limits.max_params_bytes = 1024;
    let mut big = params.domains[0].clone();
    big.id = DomainId::new("big").unwrap();
    big.limits.max_params_bytes = 4096;
    params.domains.push(big);
    test_node_on(dir, params, 1).await
}

#[tokio::test]
async fn an_upload_is_stored_under_its_hash_idempotently_and_served_back() {
    let node = test_node(1).await;
    let bytes = blob(1000, 1);
    let hash = params_hash(&bytes);
    let retained_until = 1 + 2 * node.ctx.params.reveal_window + 2;

    let r = upload(&node.app, "/params?domain=quadratic", &bytes).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(
        r.json,
        json!({
            "params_hash": hash.to_hex(),
            "size": 1000,
            "stored": true,
            "retained_until_height": retained_until,
        })
    );
    assert_eq!(node.ctx.blobs.get(&hash).unwrap(), Some(bytes.clone()));

    // Again: nothing new is written, the answer names the same blob.
    let r = upload(&node.app, "/params", &bytes).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["params_hash"], hash.to_hex());
    assert_eq!(r.json["stored"], false);
    assert_eq!(r.json["retained_until_height"], retained_until);

    // A blob the node held already (its own, a champion's) is kept regardless.
    let own = blob(50, 2);
    let own_hash = node.ctx.blobs.put(&own, 1 << 20).unwrap();
    let r = upload_streamed(&node.app, "/params", &own).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["params_hash"], own_hash.to_hex());
    assert_eq!(r.json["retained_until_height"], Value::Null);

    // Served back as raw bytes, content-addressed.
    let (status, headers, body) = send_raw(
        &node.app,
        Request::get(format!("/params/{hash}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, bytes);
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "application/octet-stream",
        "{headers:?}"
    );
    assert_eq!(headers[header::ETAG], format!("\"{hash}\""));
    assert_eq!(params_hash(&body), hash);
    let upper = format!("/params/0x{}", hash.to_hex().to_uppercase());
    let (status, _, body) =
        send_raw(&node.app, Request::get(upper).body(Body::empty()).unwrap()).await;
    assert_eq!((status, body), (StatusCode::OK, bytes));

    let r = get_json(&node.app, &format!("/params/{}", Hash32([9; 32]))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = get_json(&node.app, "/params/xyz").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"], "invalid_id");
}

#[tokio::test]
async fn uploads_over_the_limit_unknown_domains_and_empty_bodies_are_refused() {
    let node = small_limit_node().await;
    let over = blob(1025, 3);
    let over_hash = params_hash(&over);
    // The domain's limit: refused on the declared length, and on the bytes when no length
    // is declared; nothing is stored either way.
    for r in [
        upload(&node.app, "/params?domain=quadratic", &over).await,
        upload_streamed(&node.app, "/params?domain=quadratic", &over).await,
    ] {
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
        assert_eq!(r.json["error"], "payload_too_large");
        assert!(r.json["message"].as_str().unwrap().contains("1024"));
    }
    assert!(!node.ctx.blobs.contains(&over_hash));
    let exact = blob(1024, 3);
    let r = upload(&node.app, "/params?domain=quadratic", &exact).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "exactly the limit: {}",
        r.json
    );

    // Without a domain the limit is the largest domain's (`big`: 4,096).
    let r = upload(&node.app, "/params", &over).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let r = upload(&node.app, "/params?domain=big", &blob(4096, 4)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let too_big = blob(4097, 5);
    for r in [
        upload(&node.app, "/params", &too_big).await,
        upload_streamed(&node.app, "/params", &too_big).await,
    ] {
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
    }
    assert!(!node.ctx.blobs.contains(&params_hash(&too_big)));

    let r = upload(&node.app, "/params?domain=nope", &exact).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"], "unknown_domain");
    let r = upload(&node.app, "/params?domain=Not%20An%20Id", &exact).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"], "invalid_domain");
    for r in [
        upload(&node.app, "/params", &[]).await,
        upload_streamed(&node.app, "/params", &[]).await,
    ] {
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
        assert_eq!(r.json["error"], "invalid_body");
    }
    let r = get_json(&node.app, "/params").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn unreferenced_uploads_expire_and_those_named_on_chain_stay() {
    let node = test_node(1).await;
    let (orphan, crowned, late) = (blob(300, 6), blob(300, 7), blob(300, 8));
    for bytes in [&orphan, &crowned] {
        assert_eq!(
            upload(&node.app, "/params", bytes).await.status,
            StatusCode::CREATED
        );
    }
    // `crowned` becomes the champion's model; `orphan` is never named by a reveal.
    let mut champion = crown(&node.ctx);
    champion.params_hash = params_hash(&crowned);
    let mut view = node.ctx.view();
    let mut state = (*view.state).clone();
    state.champions.insert(quadratic(), champion);
    view.state = Arc::new(state);
    *node.ctx.chain.write().unwrap() = view;

    // Within the retention (2 × reveal_window + 2 blocks after the upload) nothing goes.
    let retention = 2 * node.ctx.params.reveal_window + 2;
    for _ in 0..retention {
        add_block(&node.ctx, Vec::new()).await;
    }
    let r = upload(&node.app, "/params", &late).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(node.ctx.blobs.contains(&params_hash(&orphan)));

    // One block more and the next upload deletes the orphan; the champion's model stays.
    add_block(&node.ctx, Vec::new()).await;
    let r = upload(&node.app, "/params", &blob(10, 9)).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert!(!node.ctx.blobs.contains(&params_hash(&orphan)));
    assert!(node.ctx.blobs.contains(&params_hash(&crowned)));
    assert!(node.ctx.blobs.contains(&params_hash(&late)));
    let r = get_json(&node.app, &format!("/params/{}", params_hash(&orphan))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Uploading the champion's model again: kept regardless, no retention.
    let r = upload(&node.app, "/params", &crowned).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["retained_until_height"], Value::Null);
}

#[test]
fn the_openapi_document_describes_binary_bodies() {
    let doc = super::super::openapi::document();
    let post = &doc["paths"]["/params"]["post"];
    assert_eq!(
        post["requestBody"]["content"]["application/octet-stream"]["schema"],
        json!({"type": "string", "format": "binary"})
    );
    assert_eq!(post["requestBody"]["required"], true);
    for code in ["200", "201"] {
        assert_eq!(
            post["responses"][code]["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Stored"
        );
    }
    for code in ["413", "507"] {
        assert!(post["responses"][code].is_object(), "{code}");
    }
    assert_eq!(post["parameters"][0]["name"], "domain");
    let get = &doc["paths"]["/params/{id}"]["get"];
    assert_eq!(
        get["responses"]["200"]["content"]["application/octet-stream"]["schema"]["format"],
        "binary"
    );
}
