//! `GET /metrics` through the router: the families and their values after blocks and
//! inference queries, both formats, and the output accepted by `promtool check metrics`.

use tokio::sync::watch;

use super::*;
use crate::context::ChainEvent;
use crate::metrics::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_TEXT_CONTENT_TYPE};

/// Set to 1 (scripts/test.sh does) to fail, not skip, when an external test tool is missing.
#[path = "../../../tests/common/promtool.rs"]
mod promtool;

/// GET `uri` with an optional `Accept` header; asserts a 200 and returns (content type, body).
async fn get_text(app: &Router, uri: &str, accept: Option<&str>) -> (String, String) {
    let mut req = Request::get(uri);
    if let Some(accept) = accept {
        req = req.header(header::ACCEPT, accept);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body = String::from_utf8(bytes.to_vec()).unwrap();
    assert_eq!(status, StatusCode::OK, "GET {uri}: {body}");
    (content_type, body)
}

async fn scrape(node: &TestNode) -> String {
    let (content_type, body) = get_text(&node.app, "/metrics", None).await;
    assert_eq!(content_type, PROMETHEUS_TEXT_CONTENT_TYPE);
    body
}

/// The value of the sample `series` (name and labels exactly as written).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn assert_sample(text: &str, series: &str, expected: f64) {
    assert_eq!(sample(text, series), Some(expected), "{series} in\n{text}");
}

/// Starts the node's metrics block follower, as `node::run` does.
fn follow(node: &TestNode) -> watch::Sender<bool> {
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(crate::metrics::run(
        Arc::clone(node.inference.metrics()),
        Arc::clone(&node.ctx),
        stop_rx,
    ));
    stop
}

/// Announces the tip block as the producer does after storing it.
async fn announce(ctx: &NodeContext) {
    let height = ctx.view().tip.height;
    let block = ctx.store.block_by_height(height).await.unwrap().unwrap();
    let receipt = ctx.store.receipt(height).await.unwrap().unwrap();
    ctx.events
        .send(ChainEvent::Block {
            tx_count: block.txs.len(),
            header: block.header,
            receipt: Arc::new(receipt),
        })
        .unwrap();
}

/// Scrapes until `series` reaches `value` (the follower runs beside the test).
async fn wait_for(node: &TestNode, series: &str, value: f64) -> String {
    for _ in 0..500 {
        let text = scrape(node).await;
        if sample(&text, series) == Some(value) {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{series} never reached {value}:\n{}", scrape(node).await);
}

/// A node after 3 followed blocks (2 transfers in the first; the second read back from the
/// store because it was not announced), 3 inference queries (unknown domain, no voucher,
/// paid) and one pending transaction. Returns the node and the price paid.
async fn busy_node() -> (TestNode, watch::Sender<bool>, Amount) {
    let node = test_node(1).await;
    let stop = follow(&node);
    add_block(&node.ctx, vec![transfer(0, 1_000), transfer(1, 1_000)]).await;
    announce(&node.ctx).await;
    add_block(&node.ctx, Vec::new()).await; // not announced: the follower reads it back
    add_block(&node.ctx, Vec::new()).await;
    announce(&node.ctx).await;
    wait_for(&node, "doin_chain_blocks_total", 3.0).await;

    let r = post(&node.app, "/inference", query(None, json!([0, 0, 0, 0]))).await;
    assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{}", r.json);
    let unknown = json!({"domain_id": "nope", "input_data": {"features": [0]}}).to_string();
    let r = post(&node.app, "/inference", unknown).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.json);
    serve_champion(&node).await;
    let channel = open_channel(&node, 2, node.ctx.account(), 2).await;
    let price = doin_core::config::DEFAULT_INFERENCE_PRICE;
    let voucher = Voucher::sign(&alice(), channel, price);
    let r = post(
        &node.app,
        "/inference",
        query(Some(&voucher), json!([0.5, -1, 2, 1])),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = post_tx(&node.app, &transfer(3, 1_000)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    (node, stop, price)
}

#[tokio::test]
async fn metrics_report_chain_blocks_inference_and_build() {
    let (node, _stop, price) = busy_node().await;
    let text = scrape(&node).await;
    let view = node.ctx.view();
    let state = &*view.state;

    // Gauges: as of the scrape.
    assert_sample(&text, "doin_chain_height", state.height as f64);
    assert_sample(
        &text,
        "doin_chain_finalized_height",
        state.height.saturating_sub(node.ctx.params.finality_depth) as f64,
    );
    assert_sample(&text, "doin_base_fee_base_units", state.base_fee.0 as f64);
    assert_sample(&text, "doin_difficulty", state.difficulty.threshold as f64);
    assert_sample(&text, "doin_mempool_transactions", 1.0);
    assert_sample(
        &text,
        "doin_domain_best_performance{domain=\"quadratic\"}",
        state.champions[&quadratic()].performance,
    );
    assert_sample(
        &text,
        "doin_optimizer_rounds_total{domain=\"quadratic\"}",
        3.0,
    );
    assert_sample(
        &text,
        &format!(
            "doin_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        ),
        1.0,
    );
    let uptime = sample(&text, "doin_process_uptime_seconds").unwrap();
    assert!((0.0..60.0).contains(&uptime), "{uptime}");
    let started = sample(&text, "doin_process_start_time_seconds").unwrap();
    assert_eq!(started, node.ctx.started_at_ms as f64 / 1000.0);

    // Blocks 2..=4 were followed (the channel-opening block 5 was never announced).
    let mut minted = 0;
    for height in 2..=4 {
        minted += node
            .ctx
            .store
            .receipt(height)
            .await
            .unwrap()
            .unwrap()
            .minted
            .0;
    }
    assert!(minted > 0);
    assert_sample(&text, "doin_chain_blocks_total", 3.0);
    assert_sample(&text, "doin_blocks_proposed_total", 3.0);
    assert_sample(
        &text,
        "doin_block_reward_minted_base_units_total",
        minted as f64,
    );
    assert_sample(&text, "doin_block_transactions_count", 3.0);
    assert_sample(&text, "doin_block_transactions_sum", 2.0);
    assert_sample(&text, "doin_block_transactions_bucket{le=\"0.0\"}", 2.0);
    assert_sample(&text, "doin_block_interval_seconds_count", 3.0);

    // Inference: one of each result, latency and payment for the answered one.
    for (result, domain) in [
        ("ok", "quadratic"),
        ("payment_required", "quadratic"),
        ("unknown_domain", "(unknown)"),
    ] {
        assert_sample(
            &text,
            &format!("doin_inference_requests_total{{domain=\"{domain}\",result=\"{result}\"}}"),
            1.0,
        );
    }
    assert_sample(
        &text,
        "doin_inference_duration_seconds_count{domain=\"quadratic\"}",
        1.0,
    );
    assert_sample(
        &text,
        "doin_payments_vouchers_accepted_total{domain=\"quadratic\"}",
        1.0,
    );
    assert_sample(
        &text,
        "doin_payments_received_base_units_total{domain=\"quadratic\"}",
        price.0 as f64,
    );
    // Peers (none: this node runs no network; gossip counters appear with the first message,
    // see tests/network_sync.rs); no reorganization on a solo chain (a real one is counted in
    // tests/network_consensus.rs).
    assert!(text.contains("doin_peers 0"), "{text}");
    assert_sample(&text, "doin_chain_reorgs_total", 0.0);
    assert_sample(&text, "doin_chain_reorg_depth_count", 0.0);

    // Prometheus asks for OpenMetrics and gets it.
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (content_type, open) = get_text(&node.app, "/metrics", Some(accept)).await;
    assert_eq!(content_type, OPENMETRICS_CONTENT_TYPE);
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(open.contains("# TYPE doin_build info\n"), "{open}");
    assert!(
        open.contains("# TYPE doin_chain_blocks counter\n"),
        "{open}"
    );
    assert!(open.contains("\ndoin_chain_blocks_total 3\n"), "{open}");
}

/// `promtool check metrics` (Debian package `prometheus`, installed by
/// scripts/setup-test-tools.sh) accepts the text format: it parses it and lints names, types,
/// units and help. Skipped when promtool is missing, unless DOIN_REQUIRE_TEST_TOOLS=1.
#[tokio::test]
async fn metrics_pass_promtool_check() {
    let (node, _stop, _) = busy_node().await;
    let text = scrape(&node).await;
    promtool::assert_promtool_accepts(&text);
}
