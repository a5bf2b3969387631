//! The API driven through the router (`tower::ServiceExt::oneshot`), and once over a real
//! socket. Every response is checked to be JSON, errors included.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use doin_core::amount::Amount;
use doin_core::channel::Voucher;
use doin_core::fee::FeeBid;
use doin_core::hash::Hash32;
use doin_core::identity::{AccountId, Keypair, Signature};
use doin_core::params::{ChainParams, DomainId};
use doin_core::state::Champion;
use doin_core::tx::{SignedTx, TxBody, TxKind};

use super::{router, serve, with_layers, MAX_BODY_BYTES};
use crate::context::{ChainView, NodeContext};
use crate::inference::payments::PaymentDesk;
use crate::inference::voucher_store::VoucherStore;
use crate::inference::InferenceService;
use doin_core::config::InferenceConfig;

/// `GET /metrics`.
mod metrics;

const CHAIN: &str = "t";

fn node_key() -> Keypair {
    Keypair::from_seed([1; 32])
}
fn alice() -> Keypair {
    Keypair::from_seed([2; 32])
}
fn bob() -> AccountId {
    Keypair::from_seed([3; 32]).account()
}
fn quadratic() -> DomainId {
    DomainId::new("quadratic").unwrap()
}

struct TestNode {
    ctx: Arc<NodeContext>,
    inference: Arc<InferenceService>,
    app: Router,
    _dir: tempfile::TempDir,
}

/// The quadratic domain as the test chain's domain (4 dimensions).
fn quadratic_plugin() -> Arc<dyn doin_core::plugin::DomainPlugin> {
    let config: doin_core::config::DomainConfig = serde_json::from_value(json!({
        "domain_id": "quadratic",
        "optimization_plugin": "quadratic",
        "optimization_config": {"n_params": 4}
    }))
    .unwrap();
    doin_plugins::builtin_registry()
        .instantiate("quadratic", &config.plugin_setup())
        .unwrap()
}

/// The inference service of a test node, with `config`.
async fn inference_service(
    ctx: &Arc<NodeContext>,
    dir: &std::path::Path,
    config: InferenceConfig,
) -> Arc<InferenceService> {
    let (vouchers, held) = VoucherStore::open(&dir.join("payments.db"), true)
        .await
        .unwrap();
    let desk = PaymentDesk::new(ctx.account(), config.settle_margin_blocks, vouchers, held);
    let plugins = std::collections::BTreeMap::from([(quadratic(), quadratic_plugin())]);
    Arc::new(InferenceService::new(
        Arc::clone(ctx),
        config,
        &plugins,
        desk,
        Arc::new(crate::metrics::Metrics::new()),
    ))
}

/// A node on a dev chain where alice holds 100 DOIN and the node 7 DOIN and is a genesis
/// evaluator of `quadratic`, with `blocks` empty blocks on top of genesis.
async fn test_node(blocks: u64) -> TestNode {
    let dir = tempfile::tempdir().unwrap();
    let mut params = ChainParams::dev(CHAIN);
    params.genesis_allocations = vec![
        (alice().account(), Amount::from_doin(100)),
        (node_key().account(), Amount::from_doin(7)),
    ];
    test_node_on(dir, params, blocks).await
}

/// A node with the key `node_key()` on `params` (the node made a genesis evaluator of
/// `quadratic`) in `dir`, with `blocks` empty blocks on top of genesis.
async fn test_node_on(dir: tempfile::TempDir, mut params: ChainParams, blocks: u64) -> TestNode {
    params.genesis_evaluators = vec![(quadratic(), node_key().account())];
    params.validate().unwrap();
    let ctx = crate::test_support::context(dir.path(), params, node_key(), &[quadratic()]).await;
    for _ in 0..blocks {
        add_block(&ctx, Vec::new()).await;
    }
    let inference = inference_service(&ctx, dir.path(), InferenceConfig::default()).await;
    TestNode {
        app: router(Arc::clone(&ctx), Arc::clone(&inference)),
        inference,
        ctx,
        _dir: dir,
    }
}

/// Builds the next block from `txs` (all must apply), stores it and moves the view. Returns
/// what the block paid the node (reward and tips).
async fn add_block(ctx: &NodeContext, txs: Vec<SignedTx>) -> Amount {
    add_block_with_receipt(ctx, txs, |_| {}).await
}

/// Like `add_block`, but lets the test add to the receipt before it is stored (verdicts
/// need a whole quorum flow to arise naturally; the API only reads them back).
async fn add_block_with_receipt(
    ctx: &NodeContext,
    txs: Vec<SignedTx>,
    edit: impl FnOnce(&mut doin_core::state::BlockReceipt),
) -> Amount {
    let view = ctx.view();
    let n = txs.len();
    let ts = view.state.empty_block_allowed_from(&ctx.params);
    let mut built = view
        .state
        .build_block(&ctx.params, &ctx.key, ts, txs)
        .unwrap();
    assert_eq!(built.block.txs.len(), n, "skipped: {:?}", built.skipped);
    edit(&mut built.receipt);
    ctx.store
        .append_block(&built.block, &built.state, &built.receipt)
        .await
        .unwrap();
    let state = Arc::new(built.state);
    ctx.mempool
        .lock()
        .unwrap()
        .prune(|a| state.account(a).nonce);
    *ctx.chain.write().unwrap() = ChainView {
        state,
        tip: built.block.header,
    };
    built
        .receipt
        .payouts
        .get(&ctx.account())
        .copied()
        .unwrap_or_default()
}

fn transfer(nonce: u64, amount: u64) -> SignedTx {
    alice_tx(
        nonce,
        TxKind::Transfer {
            to: bob(),
            amount: Amount(amount),
        },
    )
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    json: Value,
}

/// Sends one request; asserts the response is JSON (every response of this API is).
async fn send(app: &Router, req: Request<Body>) -> Reply {
    let what = format!("{} {}", req.method(), req.uri());
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    if what.starts_with("HEAD") {
        return Reply {
            status,
            headers,
            json: Value::Null,
        };
    }
    assert_eq!(
        headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap()),
        Some("application/json"),
        "{what}: {status}, body {:?}",
        String::from_utf8_lossy(&bytes)
    );
    let json: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{what}: body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    if !status.is_success() {
        assert_error_shape(&what, &json);
    }
    Reply {
        status,
        headers,
        json,
    }
}

fn assert_error_shape(what: &str, json: &Value) {
    let obj = json
        .as_object()
        .unwrap_or_else(|| panic!("{what}: error is not an object: {json}"));
    // A 402 also says how to pay.
    let payment = obj.contains_key("payment") && obj.contains_key("how_to_pay");
    assert_eq!(obj.len(), if payment { 4 } else { 2 }, "{what}: {json}");
    assert!(
        obj["error"].as_str().is_some_and(|s| !s.is_empty()),
        "{what}: {json}"
    );
    assert!(
        obj["message"].as_str().is_some_and(|s| !s.is_empty()),
        "{what}: {json}"
    );
}

async fn get_json(app: &Router, uri: &str) -> Reply {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

async fn post(app: &Router, uri: &str, body: impl Into<Body>) -> Reply {
    let req = Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap();
    send(app, req).await
}

async fn post_tx(app: &Router, tx: &SignedTx) -> Reply {
    post(app, "/tx", serde_json::to_vec(tx).unwrap()).await
}

fn mempool_len(ctx: &NodeContext) -> usize {
    ctx.mempool.lock().unwrap().len()
}

// === /health, /status, /domains, /chain/params ===

#[tokio::test]
async fn health_is_ok() {
    let node = test_node(0).await;
    let r = get_json(&node.app, "/health").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json, json!({ "status": "ok" }));
}

#[tokio::test]
async fn status_reports_chain_node_and_domains() {
    let node = test_node(8).await;
    node.ctx
        .mempool
        .lock()
        .unwrap()
        .insert(transfer(0, 1).id(), transfer(0, 1), 0)
        .unwrap();
    let r = get_json(&node.app, "/status").await;
    assert_eq!(r.status, StatusCode::OK);
    let s = &r.json;
    let view = node.ctx.view();
    let me = node_key().account().to_hex();
    assert_eq!(s["peer_id"], me);
    assert_eq!(s["account"], me);
    assert_eq!(s["node_label"], "test-node");
    assert_eq!(s["chain_id"], CHAIN);
    assert_eq!(s["chain_height"], 8);
    assert_eq!(s["tip_hash"], view.state.tip.to_hex());
    assert_eq!(s["tip_hash"], view.tip.hash().to_hex());
    assert_eq!(s["tip_time_ms"], view.state.tip_time_ms);
    assert_eq!(s["finalized_height"], 2, "8 - finality depth 6");
    assert_eq!(s["peers"], 0);
    // The node proposed 8 blocks: its balance is its allocation plus proposer rewards.
    let balance = view.state.account(&node_key().account()).balance;
    assert!(balance > Amount::from_doin(7));
    assert_eq!(s["balance"], balance.0);
    assert_eq!(s["balance_display"], balance.to_string());
    assert_eq!(s["total_supply"], view.state.supply().0);
    assert_eq!(s["issued"], view.state.issued.0);
    assert_eq!(s["burned"], view.state.burned.0);
    assert_eq!(s["base_fee"], view.state.base_fee.0);
    assert_eq!(s["difficulty"], view.state.difficulty.threshold);
    assert_eq!(s["mempool_size"], 1);
    assert!(s["uptime_ms"].is_u64());
    let domains = s["domains"].as_array().unwrap();
    assert_eq!(domains.len(), 1);
    assert_eq!(
        domains[0],
        json!({
            "domain_id": "quadratic",
            "optimize": true,
            "evaluate": true,
            "best_performance": null,
            "target_performance": -1.0,
            "converged": false,
            "rounds": 3,
            "champion": null,
        })
    );
}

/// Replaces the view's state with one where `quadratic` has a champion.
fn crown(ctx: &NodeContext) -> Champion {
    let champion = Champion {
        commitment: doin_core::hash::Hash32([7; 32]),
        optimizer: alice().account(),
        performance: -3.5,
        params_hash: doin_core::hash::Hash32([8; 32]),
        params_size: 1234,
        height: 5,
    };
    let mut view = ctx.view();
    let mut state = (*view.state).clone();
    state.champions.insert(quadratic(), champion.clone());
    view.state = Arc::new(state);
    *ctx.chain.write().unwrap() = view;
    champion
}

#[tokio::test]
async fn status_and_domains_show_the_champion() {
    let node = test_node(1).await;
    let champion = crown(&node.ctx);
    node.ctx.mark_converged(&quadratic());
    let s = get_json(&node.app, "/status").await.json;
    let d = &s["domains"][0];
    assert_eq!(d["best_performance"], -3.5);
    assert_eq!(d["converged"], true);
    assert_eq!(d["champion"]["optimizer"], alice().account().to_hex());
    assert_eq!(d["champion"]["params_hash"], champion.params_hash.to_hex());
    assert_eq!(d["champion"]["height"], 5);

    let r = get_json(&node.app, "/domains").await;
    assert_eq!(r.status, StatusCode::OK);
    let d = &r.json["domains"][0];
    assert_eq!(d["domain_id"], "quadratic");
    assert_eq!(d["params"]["quorum_size"], 1);
    assert_eq!(d["champion"]["performance"], -3.5);
    assert_eq!(d["best_performance"], -3.5);
    assert_eq!(d["evaluators"], 1);
    assert_eq!(d["pending_optimae"], 0);
    assert_eq!(
        d["local"],
        json!({ "optimize": true, "evaluate": true, "target_performance": -1.0, "converged": true, "rounds": 3, "search": null })
    );
}

#[tokio::test]
async fn chain_params_round_trip() {
    let node = test_node(0).await;
    let r = get_json(&node.app, "/chain/params").await;
    assert_eq!(r.status, StatusCode::OK);
    let params: ChainParams = serde_json::from_value(r.json).unwrap();
    assert_eq!(params, node.ctx.params);
}

// === /chain/blocks ===

fn heights(r: &Reply) -> Vec<u64> {
    r.json["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["header"]["height"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn blocks_default_to_the_last_20_with_hash_and_tx_count() {
    let node = test_node(25).await;
    let r = get_json(&node.app, "/chain/blocks").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(heights(&r), (6..=25).collect::<Vec<_>>());
    assert_eq!(
        (r.json["from"].as_u64(), r.json["to"].as_u64()),
        (Some(6), Some(25))
    );
    assert_eq!(r.json["tip_height"], 25);
    assert_eq!(r.json["has_more"], false);
    let last = &r.json["blocks"][19];
    let tip = node.ctx.view().tip;
    assert_eq!(last["hash"], tip.hash().to_hex());
    assert_eq!(last["tx_count"], 0);
    assert_eq!(last["header"]["proposer"], node_key().account().to_hex());
    assert!(last.get("txs").is_none(), "pages carry headers, not bodies");

    // A short chain: everything from genesis.
    let short = test_node(3).await;
    assert_eq!(
        heights(&get_json(&short.app, "/chain/blocks").await),
        vec![0, 1, 2, 3]
    );
}

#[tokio::test]
async fn blocks_paging_and_limits() {
    let node = test_node(30).await;
    let app = &node.app;
    let r = get_json(app, "/chain/blocks?from=3&to=5").await;
    assert_eq!(heights(&r), vec![3, 4, 5]);
    assert_eq!(r.json["has_more"], true);
    assert_eq!(
        heights(&get_json(app, "/chain/blocks?from=25").await),
        (25..=30).collect::<Vec<_>>()
    );
    assert_eq!(
        heights(&get_json(app, "/chain/blocks?from=2").await),
        (2..=21).collect::<Vec<_>>()
    );
    assert_eq!(
        heights(&get_json(app, "/chain/blocks?to=4").await),
        (0..=4).collect::<Vec<_>>()
    );
    // A range reaching past the tip is clamped; one starting past it is empty.
    assert_eq!(
        heights(&get_json(app, "/chain/blocks?from=28&to=99").await),
        vec![28, 29, 30]
    );
    let empty = get_json(app, "/chain/blocks?from=31&to=40").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(heights(&empty).is_empty());
    // Exactly the limit is fine; one more is not, and the message names the limit.
    assert_eq!(
        get_json(app, "/chain/blocks?from=0&to=99").await.status,
        StatusCode::OK
    );
    let big = get_json(app, "/chain/blocks?from=0&to=100").await;
    assert_eq!(big.status, StatusCode::BAD_REQUEST);
    assert_eq!(big.json["error"], "range_too_large");
    assert!(
        big.json["message"].as_str().unwrap().contains("100"),
        "{}",
        big.json
    );
    let huge = get_json(app, "/chain/blocks?from=0&to=18446744073709551615").await;
    assert_eq!(huge.status, StatusCode::BAD_REQUEST);
    let backwards = get_json(app, "/chain/blocks?from=9&to=3").await;
    assert_eq!(
        (backwards.status, backwards.json["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_range"))
    );
    for bad in [
        "from=abc",
        "to=-1",
        "from=1.5",
        "from=18446744073709551616",
        "from=&to=",
    ] {
        let r = get_json(app, &format!("/chain/blocks?{bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.json);
        assert_eq!(r.json["error"], "invalid_query", "{bad}");
    }
}

// === /chain/block/{id} ===

#[tokio::test]
async fn block_by_height_hash_and_latest_agree() {
    let node = test_node(2).await;
    add_block(&node.ctx, vec![transfer(0, 5), transfer(1, 6)]).await;
    let tip = node.ctx.view().tip;
    let hash = tip.hash().to_hex();
    let by_height = get_json(&node.app, "/chain/block/3").await;
    assert_eq!(by_height.status, StatusCode::OK);
    let b = &by_height.json;
    assert_eq!(b["hash"], hash);
    assert_eq!(b["header"]["height"], 3);
    assert_eq!(b["header"]["proposer"], node_key().account().to_hex());
    assert_eq!(b["tx_count"], 2);
    assert_eq!(b["confirmations"], 1);
    assert_eq!(b["finalized"], false);
    assert_eq!(b["txs"][0]["id"], transfer(0, 5).id().to_hex());
    assert_eq!(b["txs"][1]["index"], 1);
    let tx: SignedTx = serde_json::from_value(b["txs"][1]["tx"].clone()).unwrap();
    assert_eq!(tx, transfer(1, 6));
    let receipt = &b["receipt"];
    assert!(receipt["minted"].as_u64().unwrap() > 0);
    let base_fee = b["header"]["base_fee"].as_u64().unwrap();
    assert_eq!(receipt["burned"], 2 * base_fee, "two base fees");
    assert!(
        receipt["payouts"][node_key().account().to_hex()]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(receipt["verdicts"].as_array().unwrap().is_empty());

    for uri in [
        format!("/chain/block/{hash}"),
        format!("/chain/block/0x{hash}"),
        "/chain/block/latest".into(),
    ] {
        let r = get_json(&node.app, &uri).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert_eq!(r.json, by_height.json, "{uri}");
    }

    let genesis = get_json(&node.app, "/chain/block/0").await.json;
    assert_eq!(genesis["header"]["height"], 0);
    assert_eq!(genesis["receipt"], Value::Null);
    assert_eq!(genesis["confirmations"], 4);
}

#[tokio::test]
async fn unknown_blocks_are_404_and_malformed_ids_400() {
    let node = test_node(1).await;
    for uri in [
        "/chain/block/2",
        "/chain/block/18446744073709551615",
        &format!("/chain/block/{}", "ab".repeat(32)),
    ] {
        let r = get_json(&node.app, uri).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}: {}", r.json);
        assert_eq!(r.json["error"], "not_found");
    }
    for uri in [
        "/chain/block/xyz",
        "/chain/block/-1",
        "/chain/block/18446744073709551616",
        "/chain/block/abcd",
        "/chain/block/%FF%FE",
        &format!("/chain/block/{}", "zz".repeat(32)),
        &format!("/chain/block/{}", "7".repeat(10_000)),
    ] {
        let r = get_json(&node.app, uri).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.json);
        assert_eq!(r.json["error"], "invalid_id", "{uri}");
        assert!(
            r.json["message"].as_str().unwrap().len() < 300,
            "echoed input is truncated"
        );
    }
}

// === POST /tx, GET /tx/{id} ===

#[tokio::test]
async fn valid_tx_is_accepted_pending_then_confirmed() {
    let node = test_node(1).await;
    let tx = transfer(0, 5);
    let id = tx.id().to_hex();
    let r = post_tx(&node.app, &tx).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json, json!({ "accepted": true, "id": id }));
    assert_eq!(mempool_len(&node.ctx), 1);

    let pending = get_json(&node.app, &format!("/tx/{id}")).await;
    assert_eq!(pending.status, StatusCode::OK);
    assert_eq!(pending.json["status"], "pending");
    assert_eq!(pending.json["id"], id);
    assert!(pending.json.get("block_height").is_none());
    assert_eq!(
        serde_json::from_value::<SignedTx>(pending.json["tx"].clone()).unwrap(),
        tx
    );
    assert_eq!(get_json(&node.app, "/status").await.json["mempool_size"], 1);
    let acct = get_json(
        &node.app,
        &format!("/account/{}", alice().account().to_hex()),
    )
    .await
    .json;
    assert_eq!(
        (acct["nonce"].as_u64(), acct["pending_nonce"].as_u64()),
        (Some(0), Some(1))
    );

    let candidates = node.ctx.mempool.lock().unwrap().candidates(10);
    add_block(&node.ctx, candidates).await;
    assert_eq!(mempool_len(&node.ctx), 0);
    let confirmed = get_json(&node.app, &format!("/tx/{id}")).await;
    assert_eq!(confirmed.status, StatusCode::OK);
    let c = &confirmed.json;
    assert_eq!(c["status"], "confirmed");
    assert_eq!(c["block_height"], 2);
    assert_eq!(c["index"], 0);
    assert_eq!(c["block_hash"], node.ctx.view().tip.hash().to_hex());
    assert_eq!(c["confirmations"], 1);
    assert_eq!(c["finalized"], false);
    assert_eq!(
        serde_json::from_value::<SignedTx>(c["tx"].clone()).unwrap(),
        tx
    );

    // The same transaction again is a replay now.
    let again = post_tx(&node.app, &tx).await;
    assert_eq!(
        (again.status, again.json["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("nonce_too_low"))
    );
}

#[tokio::test]
async fn malformed_tx_bodies_are_400_and_change_nothing() {
    let node = test_node(0).await;
    let valid = serde_json::to_value(transfer(0, 5)).unwrap();
    let mut bad_sig_hex = valid.clone();
    bad_sig_hex["signature"] = json!("1234");
    let mut missing = valid.clone();
    missing["body"].as_object_mut().unwrap().remove("nonce");
    let mut negative = valid.clone();
    negative["body"]["nonce"] = json!(-1);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "invalid_body"),
        ("not json", b"hello".to_vec(), "invalid_json"),
        ("truncated", b"{\"body\": {".to_vec(), "invalid_json"),
        ("not utf-8", vec![0xff, 0xfe, 0x00], "invalid_json"),
        ("array", b"[1,2,3]".to_vec(), "invalid_transaction_json"),
        (
            "short signature",
            serde_json::to_vec(&bad_sig_hex).unwrap(),
            "invalid_transaction_json",
        ),
        (
            "missing nonce",
            serde_json::to_vec(&missing).unwrap(),
            "invalid_transaction_json",
        ),
        (
            "negative nonce",
            serde_json::to_vec(&negative).unwrap(),
            "invalid_transaction_json",
        ),
    ];
    for (what, body, code) in cases {
        let r = post(&node.app, "/tx", body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.json);
        assert_eq!(r.json["error"], code, "{what}: {}", r.json);
    }
    assert_eq!(mempool_len(&node.ctx), 0);
}

#[tokio::test]
async fn invalid_or_rejected_txs_are_422_and_change_nothing() {
    let node = test_node(0).await;
    let mut bad_sig = transfer(0, 5);
    bad_sig.signature = Signature([9; 64]);
    let mut other_signer = transfer(0, 5);
    other_signer.signature = node_key().sign(other_signer.id().as_bytes());
    let wrong_chain = TxBody {
        chain_id: "other".into(),
        ..transfer(0, 5).body
    }
    .sign(&alice());
    let zero = transfer(0, 0);
    let too_poor = transfer(0, Amount::from_doin(1_000).0);
    let low_fee = TxBody {
        fee: FeeBid {
            max_fee: Amount(10),
            tip: Amount(0),
        },
        ..transfer(0, 5).body
    }
    .sign(&alice());
    let gap = transfer(5, 5);
    let cases = [
        ("bad signature", bad_sig, "bad_signature"),
        ("signed by someone else", other_signer, "bad_signature"),
        ("wrong chain", wrong_chain, "wrong_chain"),
        ("zero amount", zero, "invalid_field"),
        ("insufficient balance", too_poor, "insufficient_balance"),
        ("max fee below base fee", low_fee, "bad_fee"),
        ("nonce gap", gap, "nonce_gap"),
    ];
    let before = get_json(&node.app, "/status").await.json;
    for (what, tx, code) in cases {
        let r = post_tx(&node.app, &tx).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{what}: {}",
            r.json
        );
        assert_eq!(r.json["error"], code, "{what}: {}", r.json);
        assert!(!r.json["message"].as_str().unwrap().is_empty());
        assert_eq!(
            get_json(&node.app, &format!("/tx/{}", tx.id()))
                .await
                .status,
            StatusCode::NOT_FOUND
        );
    }
    assert_eq!(mempool_len(&node.ctx), 0);
    let mut after = get_json(&node.app, "/status").await.json;
    after["uptime_ms"] = before["uptime_ms"].clone();
    assert_eq!(after, before);

    // Wrong nonce once the account has moved on: below the next nonce.
    add_block(&node.ctx, vec![transfer(0, 1)]).await;
    let stale = transfer(0, 2);
    let r = post_tx(&node.app, &stale).await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("nonce_too_low"))
    );
    assert!(
        r.json["message"].as_str().unwrap().contains("nonce"),
        "{}",
        r.json
    );
    assert_eq!(mempool_len(&node.ctx), 0);
}

#[tokio::test]
async fn duplicate_tx_is_409() {
    let node = test_node(0).await;
    let tx = transfer(0, 5);
    assert_eq!(post_tx(&node.app, &tx).await.status, StatusCode::OK);
    let r = post_tx(&node.app, &tx).await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (StatusCode::CONFLICT, Some("already_pending"))
    );
    assert_eq!(mempool_len(&node.ctx), 1);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let node = test_node(0).await;
    let big = vec![b' '; MAX_BODY_BYTES + 1];
    let r = post(&node.app, "/tx", big).await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    assert!(r.json["message"]
        .as_str()
        .unwrap()
        .contains(&MAX_BODY_BYTES.to_string()));
    assert_eq!(mempool_len(&node.ctx), 0);
    // A streamed body without a Content-Length: see `serve_answers_over_tcp_and_shuts_down`.
}

#[tokio::test]
async fn tx_lookup_unknown_is_404_and_malformed_400() {
    let node = test_node(0).await;
    let r = get_json(&node.app, &format!("/tx/{}", "00".repeat(32))).await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    for id in ["abc", "12", &"g".repeat(64), &"0".repeat(65)] {
        let r = get_json(&node.app, &format!("/tx/{id}")).await;
        assert_eq!(
            (r.status, r.json["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_id")),
            "{id}"
        );
    }
}

// === /account/{id} ===

#[tokio::test]
async fn account_shows_balance_nonce_reputation_evaluator_and_sent_txs() {
    let node = test_node(0).await;
    add_block(
        &node.ctx,
        vec![transfer(0, 5), transfer(1, 6), transfer(2, 7)],
    )
    .await;
    let state = node.ctx.view().state;
    let a = get_json(&node.app, &format!("/account/{}", alice().account())).await;
    assert_eq!(a.status, StatusCode::OK);
    let j = &a.json;
    let acc = state.account(&alice().account());
    assert_eq!(j["account"], alice().account().to_hex());
    assert_eq!(j["known"], true);
    assert_eq!(j["balance"], acc.balance.0);
    assert_eq!(j["balance_display"], acc.balance.to_string());
    assert_eq!(j["nonce"], 3);
    assert_eq!(j["pending_nonce"], 3);
    assert_eq!(j["evaluator"], json!([]));
    let nonces: Vec<u64> = j["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tx"]["body"]["nonce"].as_u64().unwrap())
        .collect();
    assert_eq!(nonces, vec![2, 1, 0], "newest first");
    assert_eq!(j["transactions"][0]["block_height"], 1);
    assert_eq!(j["transactions"][0]["id"], transfer(2, 7).id().to_hex());
    let limited = get_json(
        &node.app,
        &format!("/account/{}?limit=1", alice().account()),
    )
    .await;
    assert_eq!(limited.json["transactions"].as_array().unwrap().len(), 1);

    let me = get_json(&node.app, &format!("/account/{}", node_key().account()))
        .await
        .json;
    assert_eq!(
        me["evaluator"],
        json!([{ "domain": "quadratic", "bond": 0 }])
    );
    assert_eq!(
        me["reputation"],
        state.account(&node_key().account()).reputation
    );
    assert!(me["reputation"].as_u64().unwrap() > 0);
    assert_eq!(me["transactions"], json!([]));

    let stranger = get_json(&node.app, &format!("/account/{}", "cd".repeat(32))).await;
    assert_eq!(stranger.status, StatusCode::OK);
    assert_eq!(stranger.json["known"], false);
    assert_eq!(
        (
            stranger.json["balance"].as_u64(),
            stranger.json["nonce"].as_u64()
        ),
        (Some(0), Some(0))
    );
}

#[tokio::test]
async fn account_bad_input_is_400() {
    let node = test_node(0).await;
    let id = alice().account().to_hex();
    for uri in [
        "/account/nope".to_string(),
        format!("/account/{id}?limit=101"),
        format!("/account/{id}?limit=x"),
    ] {
        let r = get_json(&node.app, &uri).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.json);
    }
}

// === routing, methods, CORS, panics ===

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let node = test_node(0).await;
    for uri in [
        "/",
        "/nope",
        "/chain",
        "/chain/block",
        "/tx/",
        "/status/extra",
    ] {
        let r = get_json(&node.app, uri).await;
        assert_eq!(
            (r.status, r.json["error"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "{uri}"
        );
    }
    let r = post(&node.app, "/nope", "{}").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn wrong_methods_are_405_json() {
    let node = test_node(0).await;
    for (method, uri) in [
        (Method::POST, "/status"),
        (Method::GET, "/tx"),
        (Method::DELETE, "/chain/block/1"),
        (Method::PUT, "/tx"),
    ] {
        let req = Request::builder()
            .method(method.clone())
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let r = send(&node.app, req).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_eq!(r.json["error"], "method_not_allowed");
        assert!(
            r.headers.get(header::ALLOW).is_some(),
            "{method} {uri}: Allow header"
        );
    }
}

#[tokio::test]
async fn head_and_cors_preflight_work() {
    let node = test_node(0).await;
    let r = send(
        &node.app,
        Request::head("/status").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/tx")
        .header(header::ORIGIN, "http://dashboard.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
        .body(Body::empty())
        .unwrap();
    let resp = node.app.clone().oneshot(preflight).await.unwrap();
    assert!(resp.status().is_success());
    assert_eq!(resp.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let req = Request::get("/health")
        .header(header::ORIGIN, "http://dashboard.example")
        .body(Body::empty())
        .unwrap();
    let r = send(&node.app, req).await;
    assert_eq!(r.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}

#[tokio::test]
async fn a_panicking_handler_is_a_json_500() {
    async fn boom() -> &'static str {
        panic!("handler bug")
    }
    let app = with_layers(Router::new().route("/boom", get(boom)));
    let r = get_json(&app, "/boom").await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.json["error"], "internal");
    assert!(
        !r.json["message"].as_str().unwrap().contains("handler bug"),
        "panic text is not leaked"
    );
}

// === over a socket ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_over_tcp_and_shuts_down() {
    let node = test_node(2).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        Arc::clone(&node.ctx),
        Arc::clone(&node.inference),
        listener,
        async {
            let _ = stopped.await;
        },
    ));
    let (status, missing) = tokio::task::spawn_blocking(move || {
        let status: Value = ureq::get(&format!("http://{addr}/status"))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        let missing = match ureq::get(&format!("http://{addr}/chain/block/99")).call() {
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_json::<Value>().unwrap()),
            other => panic!("expected 404, got {other:?}"),
        };
        (status, missing)
    })
    .await
    .unwrap();
    assert_eq!(status["chain_height"], 2);
    // A chunked body (no Content-Length) over the limit is cut off with a JSON 413.
    let chunked = tokio::task::spawn_blocking(move || {
        let body = std::io::Read::take(std::io::repeat(b' '), (MAX_BODY_BYTES + 4096) as u64);
        match ureq::post(&format!("http://{addr}/tx")).send(body) {
            Err(ureq::Error::Status(code, resp)) => (code, resp.into_json::<Value>().unwrap()),
            other => panic!("expected 413, got {other:?}"),
        }
    })
    .await
    .unwrap();
    assert_eq!(chunked.0, 413);
    assert_eq!(chunked.1["error"], "payload_too_large");
    assert_eq!(missing.0, 404);
    assert_eq!(missing.1["error"], "not_found");
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

// === inference and payment channels ===

fn alice_tx(nonce: u64, kind: TxKind) -> SignedTx {
    TxBody {
        chain_id: CHAIN.into(),
        sender: alice().account(),
        nonce,
        fee: FeeBid {
            max_fee: Amount(10_000),
            tip: Amount(100),
        },
        kind,
    }
    .sign(&alice())
}

/// Stores a real quadratic model as `quadratic`'s champion and waits until it is served.
async fn serve_champion(node: &TestNode) -> Champion {
    let x = [0.5f64, -1.0, 2.0, 0.0];
    let params: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let params_hash = node.ctx.blobs.put(&params, 1 << 20).unwrap();
    let mut champion = crown(&node.ctx);
    champion.params_hash = params_hash;
    champion.params_size = params.len() as u64;
    let mut view = node.ctx.view();
    let mut state = (*view.state).clone();
    state.champions.insert(quadratic(), champion.clone());
    view.state = Arc::new(state);
    *node.ctx.chain.write().unwrap() = view;
    node.inference.refresh_models();
    for _ in 0..200 {
        if node.inference.offers()[0].ready {
            return champion;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the champion was never loaded");
}

/// Opens a channel from alice to `provider` with `deposit` DOIN; returns its id.
async fn open_channel(node: &TestNode, nonce: u64, provider: AccountId, deposit: u64) -> Hash32 {
    add_block(
        &node.ctx,
        vec![alice_tx(
            nonce,
            TxKind::ChannelOpen {
                provider,
                deposit: Amount::from_doin(deposit),
                lifetime: 1_000,
            },
        )],
    )
    .await;
    doin_core::channel::channel_id(&alice().account(), nonce)
}

fn query(voucher: Option<&Voucher>, features: Value) -> String {
    let mut body = json!({"domain_id": "quadratic", "input_data": {"features": features}});
    if let Some(v) = voucher {
        body["voucher"] = serde_json::to_value(v).unwrap();
    }
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inference_is_served_from_the_champion_and_paid_by_voucher() {
    let node = test_node(1).await;
    let price = doin_core::config::DEFAULT_INFERENCE_PRICE;
    let offers = get_json(&node.app, "/inference").await;
    assert_eq!(offers.status, StatusCode::OK);
    assert_eq!(offers.json["mode"], "paid");
    assert_eq!(offers.json["offers"][0]["ready"], false);
    let r = post(&node.app, "/inference", query(None, json!([0, 0, 0, 0]))).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.json);
    assert_eq!(r.json["payment"]["price"], price.units());
    assert_eq!(r.json["payment"]["provider"], node.ctx.account().to_hex());

    let champion = serve_champion(&node).await;
    let offers = get_json(&node.app, "/inference").await;
    assert_eq!(offers.json["offers"][0]["input"], json!({"features": 4}));
    let channel = open_channel(&node, 0, node.ctx.account(), 2).await;
    let pay = |amount: u64| Voucher::sign(&alice(), channel, Amount(amount));

    let r = post(
        &node.app,
        "/inference",
        query(Some(&pay(price.units())), json!([0.5, -1, 2, 1])),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["prediction"]["distance"], 1.0);
    assert_eq!(r.json["optimae_id"], champion.commitment.to_hex());
    assert_eq!(r.json["params_hash"], champion.params_hash.to_hex());
    assert_eq!(r.json["performance"], champion.performance);
    assert_eq!(r.json["price"], price.units());
    assert_eq!(r.json["paid"], price.units());

    // Replayed, lower, and not raised by a whole price: nothing is served, nothing charged.
    for amount in [price.units(), price.units() - 1, price.units() * 2 - 1] {
        let r = post(
            &node.app,
            "/inference",
            query(Some(&pay(amount)), json!([0, 0, 0, 0])),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::PAYMENT_REQUIRED,
            "{amount}: {}",
            r.json
        );
        assert_eq!(r.json["error"], "voucher_too_low");
        assert_eq!(
            r.json["payment"]["paid"],
            price.units(),
            "the client can resync"
        );
    }
    // Above the deposit.
    let r = post(
        &node.app,
        "/inference",
        query(
            Some(&pay(Amount::from_doin(3).units())),
            json!([0, 0, 0, 0]),
        ),
    )
    .await;
    assert_eq!(r.json["error"], "voucher_above_deposit", "{}", r.json);
    // Forged: signed by someone other than the channel's client.
    let forged = Voucher::sign(&node_key(), channel, Amount(price.units() * 2));
    let r = post(
        &node.app,
        "/inference",
        query(Some(&forged), json!([0, 0, 0, 0])),
    )
    .await;
    assert_eq!(r.json["error"], "bad_voucher_signature", "{}", r.json);
    // Unknown channel, and a channel that pays another provider.
    let unknown = Voucher::sign(&alice(), Hash32([42; 32]), Amount(price.units() * 2));
    let r = post(
        &node.app,
        "/inference",
        query(Some(&unknown), json!([0, 0, 0, 0])),
    )
    .await;
    assert_eq!(r.json["error"], "channel_unknown", "{}", r.json);
    let to_bob = open_channel(&node, 1, bob(), 1).await;
    let other = Voucher::sign(&alice(), to_bob, Amount(price.units()));
    let r = post(
        &node.app,
        "/inference",
        query(Some(&other), json!([0, 0, 0, 0])),
    )
    .await;
    assert_eq!(r.json["error"], "wrong_provider", "{}", r.json);

    // Bad input is a 4xx and charges nothing: the same voucher pays afterwards.
    let next = pay(price.units() * 2);
    for (body, status, code) in [
        (
            query(Some(&next), json!([1, 2])),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            query(Some(&next), json!("x")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            json!({"domain_id": "nope", "input_data": {}, "voucher": next}).to_string(),
            StatusCode::NOT_FOUND,
            "unknown_domain",
        ),
        (
            "{not json".to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"domain_id": "quadratic", "input": {}}).to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"domain_id": "quadratic", "input_data": {"features": "x".repeat(70_000)}})
                .to_string(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ] {
        let r = post(&node.app, "/inference", body).await;
        assert_eq!(
            (r.status, r.json["error"].as_str().unwrap()),
            (status, code),
            "{}",
            r.json
        );
    }
    let r = post(
        &node.app,
        "/inference",
        query(Some(&next), json!([0, 0, 0, 0])),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["paid"], price.units() * 2);

    // The provider's view of the channel, and the voucher is on disk.
    let c = get_json(&node.app, &format!("/channel/{channel}")).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.json);
    assert_eq!(c.json["best_voucher"], price.units() * 2);
    assert_eq!(c.json["queries"], 2);
    assert_eq!(c.json["settled"], 0);
    let list = get_json(&node.app, "/channels").await;
    assert_eq!(
        list.json["channels"].as_array().unwrap().len(),
        1,
        "{}",
        list.json
    );
    let (_, stored) = VoucherStore::open(&node._dir.path().join("payments.db"), true)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].voucher, next);

    // A new champion whose parameters are not here (yet): the previous model keeps serving.
    let mut view = node.ctx.view();
    let mut state = (*view.state).clone();
    let newer = Champion {
        commitment: Hash32([11; 32]),
        params_hash: Hash32([12; 32]),
        ..champion.clone()
    };
    state.champions.insert(quadratic(), newer);
    view.state = Arc::new(state);
    *node.ctx.chain.write().unwrap() = view;
    node.inference.refresh_models();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let r = post(
        &node.app,
        "/inference",
        query(Some(&pay(price.units() * 3)), json!([0, 0, 0, 0])),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["optimae_id"], champion.commitment.to_hex());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_settles_a_closing_channel_and_collects_after_the_window() {
    let node = test_node(1).await;
    serve_champion(&node).await;
    let price = doin_core::config::DEFAULT_INFERENCE_PRICE;
    let deposit = Amount::from_doin(2);
    let channel = open_channel(&node, 0, node.ctx.account(), 2).await;
    for i in 1..=3 {
        let v = Voucher::sign(&alice(), channel, Amount(price.units() * i));
        let r = post(
            &node.app,
            "/inference",
            query(Some(&v), json!([0, 0, 0, 0])),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    }
    let paid = Amount(price.units() * 3);
    let node_before = node.ctx.view().state.account(&node.ctx.account()).balance;
    let alice_before = node.ctx.view().state.account(&alice().account()).balance;

    // Nothing to do while the channel is open and far from expiry.
    node.inference.desk().on_block(&node.ctx);
    assert_eq!(mempool_len(&node.ctx), 0);
    // The client closes: the provider settles its best voucher at once.
    let close = alice_tx(1, TxKind::ChannelClose { channel });
    let close_fee = doin_core::fee::charge(&close.body.fee, node.ctx.view().state.base_fee)
        .unwrap()
        .total();
    let mut earned = add_block(&node.ctx, vec![close]).await;
    node.inference.desk().on_block(&node.ctx);
    let pending = node.ctx.mempool.lock().unwrap().candidates(10);
    assert_eq!(pending.len(), 1);
    assert!(
        matches!(pending[0].body.kind, TxKind::ChannelSettle { voucher } if voucher.amount == paid)
    );
    // Sent once, not again on the next block event.
    node.inference.desk().on_block(&node.ctx);
    assert_eq!(mempool_len(&node.ctx), 1);
    let mut fees = doin_core::fee::charge(&pending[0].body.fee, node.ctx.view().state.base_fee)
        .unwrap()
        .total();
    earned = earned
        .checked_add(add_block(&node.ctx, pending.clone()).await)
        .unwrap();
    let ch = node.ctx.view().state.channels[&channel].clone();
    assert_eq!(ch.settled, paid);
    // Settling the same voucher twice is refused by the chain.
    let again = node.ctx.submit_own(TxKind::ChannelSettle {
        voucher: Voucher::sign(&alice(), channel, paid),
    });
    assert!(again.is_err(), "{again:?}");
    // Collecting before the window ends is refused.
    let early = node.ctx.submit_own(TxKind::ChannelCollect { channel });
    assert!(early.is_err(), "{early:?}");
    assert_eq!(
        mempool_len(&node.ctx),
        0,
        "refused transactions are not queued"
    );

    // After the window, the provider collects: it gets exactly what was paid, alice the rest.
    let closes_at = ch.closes_at.unwrap();
    while node.ctx.view().state.channels.contains_key(&channel) {
        assert!(
            node.ctx.view().state.height <= closes_at + 2,
            "never collected"
        );
        node.inference.desk().on_block(&node.ctx);
        let txs = node.ctx.mempool.lock().unwrap().candidates(10);
        for tx in &txs {
            assert!(
                matches!(tx.body.kind, TxKind::ChannelCollect { .. }),
                "{tx:?}"
            );
            let fee = doin_core::fee::charge(&tx.body.fee, node.ctx.view().state.base_fee).unwrap();
            fees = fees.checked_add(fee.total()).unwrap();
        }
        earned = earned.checked_add(add_block(&node.ctx, txs).await).unwrap();
    }
    let state = node.ctx.view().state;
    assert_eq!(
        state.account(&alice().account()).balance,
        alice_before
            .checked_add(deposit.checked_sub(paid).unwrap())
            .and_then(|a| a.checked_sub(close_fee))
            .unwrap(),
        "alice gets back the deposit minus what she paid, and paid her close fee"
    );
    let node_after = state.account(&node.ctx.account()).balance;
    assert_eq!(
        node_after,
        node_before
            .checked_add(paid)
            .and_then(|a| a.checked_add(earned))
            .and_then(|a| a.checked_sub(fees))
            .unwrap(),
        "the node gets exactly what was paid, plus its block rewards and tips, minus its fees"
    );
    node.inference.desk().on_block(&node.ctx);
    assert!(
        node.inference.desk().held(&channel).is_none(),
        "paid-out channels are forgotten"
    );
    state.check_conservation().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_mode_answers_without_a_voucher_and_charges_nothing() {
    let mut node = test_node(1).await;
    let config = InferenceConfig {
        mode: doin_core::config::InferenceMode::Free,
        ..InferenceConfig::default()
    };
    let dir = node._dir.path().join("free");
    std::fs::create_dir_all(&dir).unwrap();
    node.inference = inference_service(&node.ctx, &dir, config).await;
    node.app = router(Arc::clone(&node.ctx), Arc::clone(&node.inference));
    serve_champion(&node).await;
    let offers = get_json(&node.app, "/inference").await;
    assert_eq!(offers.json["mode"], "free");
    assert_eq!(offers.json["offers"][0]["price"], 0);
    let r = post(&node.app, "/inference", query(None, json!([0.5, -1, 2, 0]))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["prediction"]["distance"], 0.0);
    assert_eq!(r.json["price"], 0);
    assert!(r.json.get("paid").is_none(), "{}", r.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_settles_before_expiry_and_refuses_vouchers_it_could_not_settle() {
    let node = test_node(1).await;
    serve_champion(&node).await;
    let price = doin_core::config::DEFAULT_INFERENCE_PRICE;
    let margin = InferenceConfig::default().settle_margin_blocks;
    let lifetime = margin + 4;
    add_block(
        &node.ctx,
        vec![alice_tx(
            0,
            TxKind::ChannelOpen {
                provider: node.ctx.account(),
                deposit: Amount::from_doin(1),
                lifetime,
            },
        )],
    )
    .await;
    let channel = doin_core::channel::channel_id(&alice().account(), 0);
    let expires_at = node.ctx.view().state.channels[&channel].expires_at;
    let v = Voucher::sign(&alice(), channel, price);
    let r = post(
        &node.app,
        "/inference",
        query(Some(&v), json!([0, 0, 0, 0])),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // Blocks go by without a close; the node settles once expiry is `margin` blocks away.
    let mut settled_at = None;
    let mut paid = 1;
    while node.ctx.view().state.height < expires_at {
        node.inference.desk().on_block(&node.ctx);
        let txs = node.ctx.mempool.lock().unwrap().candidates(10);
        if txs
            .iter()
            .any(|t| matches!(t.body.kind, TxKind::ChannelSettle { .. }))
        {
            settled_at.get_or_insert(node.ctx.view().state.height + 1);
        }
        // Served while the node can still settle; refused once too close to expiry.
        let next = Voucher::sign(&alice(), channel, Amount(price.units() * (paid + 1)));
        let r = post(
            &node.app,
            "/inference",
            query(Some(&next), json!([0, 0, 0, 0])),
        )
        .await;
        if node.ctx.view().state.height + margin >= expires_at {
            assert_eq!(r.json["error"], "channel_closing", "{}", r.json);
        } else {
            assert_eq!(r.status, StatusCode::OK, "{}", r.json);
            paid += 1;
        }
        add_block(&node.ctx, txs).await;
    }
    let settled_at = settled_at.expect("the node settled before expiry");
    assert!(
        settled_at < expires_at,
        "settled at {settled_at}, expiry {expires_at}"
    );
    assert_eq!(
        node.ctx.view().state.channels[&channel].settled,
        Amount(price.units() * paid),
        "everything served was settled"
    );
}

// === mempool, fees, chain extras, optimae, reputation, coin, stats, CORS, OpenAPI ===
// In `tests/more.rs`.

mod more;

// === POST /params, GET /params/{id} ===
// In `tests/params.rs`.

mod params;
