//! Tests of the mempool and fee market, chain extras, optimae, reputation, coin, stats and
//! CSV export, CORS settings and the OpenAPI document (the routes of `market.rs`,
//! `chain_info.rs`, `optimae.rs`, `coin.rs`, `stats.rs` and `openapi.rs`).

use std::collections::{BTreeMap, BTreeSet};

use doin_core::config::HttpConfig;
use doin_core::optimae::{RejectReason, Verdict};
use doin_core::state::{PendingOptimae, RecordedVote, Revealed, VerdictRecord};

use super::super::openapi::{self, Method as DocMethod, ROUTES};
use super::super::router_with;
use super::*;

fn verdict(commitment: u8, verdict: Verdict, claim: f64) -> VerdictRecord {
    VerdictRecord {
        commitment: Hash32([commitment; 32]),
        domain: quadratic(),
        optimizer: alice().account(),
        claim,
        params_hash: Hash32([commitment.wrapping_add(100); 32]),
        metrics: Vec::new(),
        verdict,
        work: if verdict.is_accepted() { 5 } else { 0 },
        votes: BTreeMap::from([(
            node_key().account(),
            RecordedVote {
                measured: claim,
                data_hash: Hash32([1; 32]),
            },
        )]),
        burned: if verdict.is_accepted() {
            Amount::ZERO
        } else {
            Amount(2_000)
        },
    }
}

fn transfer_tip(nonce: u64, tip: u64) -> SignedTx {
    TxBody {
        chain_id: CHAIN.into(),
        sender: alice().account(),
        nonce,
        fee: FeeBid {
            max_fee: Amount(1_000_000),
            tip: Amount(tip),
        },
        kind: TxKind::Transfer {
            to: bob(),
            amount: Amount(1),
        },
    }
    .sign(&alice())
}

async fn assert_400(app: &Router, uri: &str, code: &str) {
    let r = get_json(app, uri).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.json);
    assert_eq!(r.json["error"], code, "{uri}: {}", r.json);
}

// === /mempool, /fees ===

#[tokio::test]
async fn mempool_pages_pending_txs_by_tip_and_suggests_a_bid() {
    let node = test_node(1).await;
    for nonce in 0..5 {
        let tx = transfer_tip(nonce, 100 + nonce);
        node.ctx.submit(tx).unwrap();
    }
    let r = get_json(&node.app, "/mempool").await;
    assert_eq!(r.status, StatusCode::OK);
    let m = &r.json;
    assert_eq!(m["count"], 5);
    assert_eq!(m["capacity"], 1000);
    assert_eq!(m["has_more"], false);
    assert_eq!(m["base_fee"], node.ctx.view().state.base_fee.0);
    assert!(m["suggested_bid"]["max_fee"].as_u64().unwrap() > m["base_fee"].as_u64().unwrap());
    let tips: Vec<u64> = m["txs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["fee"]["tip"].as_u64().unwrap())
        .collect();
    assert_eq!(tips, vec![104, 103, 102, 101, 100], "highest tip first");
    let first = &m["txs"][0];
    assert_eq!(first["kind"], "transfer");
    assert_eq!(first["sender"], alice().account().to_hex());
    assert_eq!(first["tx"]["body"]["nonce"], 4);
    assert_eq!(first["id"], transfer_tip(4, 104).id().to_hex());

    let r = get_json(&node.app, "/mempool?limit=2&offset=1").await;
    assert_eq!(r.json["txs"].as_array().unwrap().len(), 2);
    assert_eq!(r.json["txs"][0]["fee"]["tip"], 103);
    assert_eq!(r.json["has_more"], true);
    assert_eq!(
        (r.json["limit"].as_u64(), r.json["offset"].as_u64()),
        (Some(2), Some(1))
    );
    let r = get_json(&node.app, "/mempool?offset=5").await;
    assert_eq!(r.json["txs"], json!([]));

    assert_400(&node.app, "/mempool?limit=101", "limit_too_large").await;
    assert_400(&node.app, "/mempool?offset=100001", "offset_too_large").await;
    assert_400(&node.app, "/mempool?limit=-1", "invalid_query").await;
    assert_400(&node.app, "/mempool?limit=abc", "invalid_query").await;
}

#[tokio::test]
async fn fees_report_the_base_fee_rule_and_recent_blocks() {
    let node = test_node(25).await;
    node.ctx.submit(transfer_tip(0, 100)).unwrap();
    let r = get_json(&node.app, "/fees").await;
    assert_eq!(r.status, StatusCode::OK);
    let f = &r.json;
    let state = node.ctx.view().state;
    let p = &node.ctx.params;
    assert_eq!(f["height"], 25);
    assert_eq!(f["base_fee"], state.base_fee.0);
    assert_eq!(f["base_fee_display"], state.base_fee.to_string());
    let next = &f["next"];
    assert_eq!(next["max_change_denominator"], 8);
    assert_eq!(next["target_block_txs"], p.target_block_txs);
    assert_eq!(next["max_block_txs"], p.max_block_txs);
    assert_eq!(next["pending_txs"], 1);
    assert_eq!(next["projected_next_block_txs"], 1);
    let empty = next["base_fee_if_empty"].as_u64().unwrap();
    let projected = next["projected_base_fee"].as_u64().unwrap();
    let full = next["base_fee_if_full"].as_u64().unwrap();
    assert!(empty <= projected && projected <= full, "{next}");
    assert!(full > state.base_fee.0, "a full block raises the base fee");
    assert_eq!(f["suggested_tip"], 100);
    let history = f["history"].as_array().unwrap();
    assert_eq!(history.len(), 20);
    assert_eq!(history[0]["height"], 6);
    assert_eq!(history[19]["height"], 25);
    assert_eq!(history[19]["base_fee"], node.ctx.view().tip.base_fee.0);
    assert_eq!(history[19]["tx_count"], 0);

    let r = get_json(&node.app, "/fees?blocks=100").await;
    assert_eq!(
        r.json["history"].as_array().unwrap().len(),
        26,
        "genesis..=25"
    );
    let r = get_json(&node.app, "/fees?blocks=0").await;
    assert_eq!(r.json["history"], json!([]));
    assert_400(&node.app, "/fees?blocks=101", "limit_too_large").await;
    assert_400(&node.app, "/fees?blocks=x", "invalid_query").await;
}

// === /chain/finality, /chain/difficulty, /chain/rewards ===

#[tokio::test]
async fn finality_names_the_block_depth_below_the_tip() {
    let node = test_node(10).await;
    let r = get_json(&node.app, "/chain/finality").await;
    assert_eq!(r.status, StatusCode::OK);
    let f = &r.json;
    assert_eq!(f["tip_height"], 10);
    assert_eq!(f["finality_depth"], 6);
    assert_eq!(f["finalized_height"], 4);
    assert_eq!(f["unfinalized_blocks"], 6);
    let b4 = node.ctx.store.block_by_height(4).await.unwrap().unwrap();
    assert_eq!(f["finalized_hash"], b4.hash().to_hex());
    assert_eq!(f["finalized_time_ms"], b4.header.timestamp_ms);
    assert_eq!(f["tip_hash"], node.ctx.view().state.tip.to_hex());

    // Below the depth, genesis is the finalized block.
    let young = test_node(2).await;
    let f = get_json(&young.app, "/chain/finality").await.json;
    assert_eq!(f["finalized_height"], 0);
    assert_eq!(f["unfinalized_blocks"], 2);
}

#[tokio::test]
async fn difficulty_reports_threshold_ema_and_recent_work() {
    let node = test_node(5).await;
    let r = get_json(&node.app, "/chain/difficulty").await;
    assert_eq!(r.status, StatusCode::OK);
    let d = &r.json;
    let state = node.ctx.view().state;
    assert_eq!(d["threshold"], state.difficulty.threshold);
    assert_eq!(d["ema_block_time_ms"], state.difficulty.ema_block_time_ms);
    assert_eq!(
        d["target_block_time_ms"],
        node.ctx.params.target_block_time_ms
    );
    assert_eq!(
        d["state"]["epoch_start_height"],
        state.difficulty.epoch_start_height
    );
    let recent = d["recent"].as_array().unwrap();
    assert_eq!(recent.len(), 6, "genesis..=5");
    assert_eq!(recent[0]["height"], 0);
    assert_eq!(recent[0]["interval_ms"], Value::Null);
    assert_eq!(
        recent[1]["interval_ms"], node.ctx.params.max_block_interval_ms,
        "empty blocks come at the maximum interval"
    );
    assert_eq!(recent[5]["work"], 0);

    let r = get_json(&node.app, "/chain/difficulty?blocks=2").await;
    let recent = r.json["recent"].as_array().unwrap();
    assert_eq!(recent.len(), 2);
    assert_eq!(recent[0]["height"], 4);
    assert!(recent[0]["interval_ms"].is_u64(), "the parent is read too");
    assert_400(&node.app, "/chain/difficulty?blocks=101", "limit_too_large").await;
}

#[tokio::test]
async fn rewards_list_minted_coins_and_payouts_by_block() {
    let node = test_node(30).await;
    let r = get_json(&node.app, "/chain/rewards").await;
    assert_eq!(r.status, StatusCode::OK);
    let blocks = r.json["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 20);
    assert_eq!(
        (r.json["from"].as_u64(), r.json["to"].as_u64()),
        (Some(11), Some(30))
    );
    assert_eq!(r.json["has_more"], false);
    let b = &blocks[19];
    let receipt = node.ctx.store.receipt(30).await.unwrap().unwrap();
    assert_eq!(b["height"], 30);
    assert_eq!(b["minted"], receipt.minted.0);
    assert_eq!(b["proposer"], node_key().account().to_hex());
    let payouts = b["payouts"].as_array().unwrap();
    assert_eq!(payouts.len(), receipt.payouts.len());
    assert_eq!(payouts[0]["account"], node_key().account().to_hex());
    let sum: u64 = blocks.iter().map(|b| b["minted"].as_u64().unwrap()).sum();
    assert_eq!(r.json["minted"], sum);

    // Genesis has no receipt and is left out.
    let r = get_json(&node.app, "/chain/rewards?from=0&to=3").await;
    let heights: Vec<u64> = r.json["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["height"].as_u64().unwrap())
        .collect();
    assert_eq!(heights, vec![1, 2, 3]);
    assert_eq!(r.json["has_more"], true);
    let r = get_json(&node.app, "/chain/rewards?from=500").await;
    assert_eq!(r.json["blocks"], json!([]));
    assert_400(&node.app, "/chain/rewards?from=0&to=100", "range_too_large").await;
    assert_400(&node.app, "/chain/rewards?from=5&to=4", "invalid_range").await;
    assert_400(&node.app, "/chain/rewards?from=x", "invalid_query").await;
}

// === /optimae, /optimae/{id} ===

/// Puts a committed and a revealed optimae into the view's state (as `crown` does for a
/// champion). Returns their ids.
fn pend(ctx: &NodeContext) -> (Hash32, Hash32) {
    let committed = Hash32([0x11; 32]);
    let revealed = Hash32([0x22; 32]);
    let mut view = ctx.view();
    let mut state = (*view.state).clone();
    let base = PendingOptimae {
        domain: quadratic(),
        optimizer: alice().account(),
        stake: Amount(10_000),
        commit_height: state.height,
        commit_block: None,
        reveal: None,
    };
    state.optimae.insert(committed, base.clone());
    state.optimae.insert(
        revealed,
        PendingOptimae {
            commit_height: state.height.saturating_sub(1),
            commit_block: Some(Hash32([3; 32])),
            reveal: Some(Revealed {
                params_hash: Hash32([4; 32]),
                params_size: 32,
                claim: -2.5,
                metrics: vec![doin_core::tx::Metric {
                    name: "train_seconds".into(),
                    value: 1.5,
                }],
                reveal_height: state.height,
                quorum_seed: Hash32([5; 32]),
                quorum: vec![node_key().account(), bob()],
                votes: BTreeMap::from([(
                    node_key().account(),
                    RecordedVote {
                        measured: -2.4,
                        data_hash: Hash32([6; 32]),
                    },
                )]),
                vote_deadline: state.height + 10,
            }),
            ..base
        },
    );
    view.state = Arc::new(state);
    *ctx.chain.write().unwrap() = view;
    (committed, revealed)
}

#[tokio::test]
async fn optimae_lists_pending_ones_with_quorum_progress() {
    let node = test_node(3).await;
    let (committed, revealed) = pend(&node.ctx);
    let r = get_json(&node.app, "/optimae").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["count"], 2);
    let list = r.json["optimae"].as_array().unwrap();
    // By commit height: the revealed one was committed a block earlier.
    assert_eq!(list[0]["id"], revealed.to_hex());
    assert_eq!(list[0]["status"], "revealed");
    let reveal = &list[0]["reveal"];
    assert_eq!(reveal["claim"], -2.5);
    assert_eq!(reveal["votes_needed"], 2, "ceil(2*2/3)");
    assert_eq!(reveal["votes_cast"], 1);
    assert_eq!(
        reveal["votes"][0]["evaluator"],
        node_key().account().to_hex()
    );
    assert_eq!(reveal["votes"][0]["measured"], -2.4);
    assert_eq!(reveal["quorum"].as_array().unwrap().len(), 2);
    assert_eq!(reveal["metrics"][0]["name"], "train_seconds");
    assert_eq!(list[1]["id"], committed.to_hex());
    assert_eq!(list[1]["status"], "committed");
    assert_eq!(list[1]["reveal"], Value::Null);
    assert_eq!(
        list[1]["reveal_deadline"],
        3 + node.ctx.params.reveal_window
    );
    assert_eq!(list[1]["optimizer"], alice().account().to_hex());

    let r = get_json(&node.app, "/optimae?status=committed").await;
    assert_eq!(r.json["count"], 1);
    assert_eq!(r.json["optimae"][0]["id"], committed.to_hex());
    let r = get_json(
        &node.app,
        "/optimae?domain=quadratic&status=revealed&limit=1",
    )
    .await;
    assert_eq!(r.json["optimae"][0]["id"], revealed.to_hex());
    let r = get_json(&node.app, "/optimae?limit=1&offset=1").await;
    assert_eq!(r.json["optimae"][0]["id"], committed.to_hex());
    assert_eq!(r.json["has_more"], false);

    let r = get_json(&node.app, &format!("/optimae/{}", revealed.to_hex())).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["status"], "revealed");
    assert_eq!(r.json["reveal"]["votes_cast"], 1);
    assert_eq!(r.json["commit_block"], Hash32([3; 32]).to_hex());

    assert_400(&node.app, "/optimae?limit=101", "limit_too_large").await;
    assert_400(&node.app, "/optimae?offset=10001", "offset_too_large").await;
    assert_400(&node.app, "/optimae?status=maybe", "invalid_query").await;
    assert_400(&node.app, "/optimae?status=decided", "invalid_query").await;
    assert_400(
        &node.app,
        "/optimae?domain=Not%20A%20Domain",
        "invalid_domain",
    )
    .await;
    let r = get_json(&node.app, "/optimae?domain=nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.json);
}

#[tokio::test]
async fn decided_and_expired_optimae_are_found_in_their_receipts() {
    let node = test_node(2).await;
    // A real commit that is never revealed: it expires `reveal_window + 1` blocks later.
    let expiring = Hash32([0x33; 32]);
    add_block(
        &node.ctx,
        vec![alice_tx(
            0,
            TxKind::Commit {
                domain: quadratic(),
                commitment: expiring,
                stake: Amount(20_000),
            },
        )],
    )
    .await;
    let accepted = verdict(
        0x44,
        Verdict::Accepted {
            median: -0.5,
            credit: 9_999.5,
        },
        -0.5,
    );
    add_block_with_receipt(&node.ctx, Vec::new(), |r| r.verdicts.push(accepted.clone())).await;
    let decided_at = node.ctx.view().state.height;
    let window = node.ctx.params.reveal_window;
    for _ in 0..window {
        add_block(&node.ctx, Vec::new()).await;
    }
    let state = node.ctx.view().state;
    assert!(state.optimae.is_empty(), "the commit expired");
    let expired_at = state.height;

    let r = get_json(
        &node.app,
        &format!("/optimae/{}", accepted.commitment.to_hex()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["status"], "decided");
    assert_eq!(r.json["height"], decided_at);
    assert_eq!(r.json["record"]["verdict"]["Accepted"]["median"], -0.5);
    assert_eq!(r.json["record"]["optimizer"], alice().account().to_hex());
    assert_eq!(r.json["record"]["claim"], -0.5);
    assert_eq!(r.json["burned"], 0);

    let r = get_json(&node.app, &format!("/optimae/{}", expiring.to_hex())).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["status"], "expired");
    assert_eq!(r.json["height"], expired_at);
    assert_eq!(r.json["record"], Value::Null);
    assert_eq!(r.json["burned"], 4_000, "20% of the stake");

    let r = get_json(&node.app, &format!("/optimae/{}", "ab".repeat(32))).await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    // The params hash of a verdict is in the receipt too, but it is not an optimae.
    let r = get_json(
        &node.app,
        &format!("/optimae/{}", accepted.params_hash.to_hex()),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_400(&node.app, "/optimae/xyz", "invalid_id").await;
}

// === /reputation ===

#[tokio::test]
async fn reputation_ranks_accounts_with_eligibility() {
    let node = test_node(1).await;
    let mut view = node.ctx.view();
    let mut state = (*view.state).clone();
    let min = node.ctx.params.reputation.min_eligible;
    state
        .accounts
        .entry(alice().account())
        .or_default()
        .reputation = min + 500;
    state.accounts.entry(bob()).or_default().reputation = min - 1;
    view.state = Arc::new(state);
    *node.ctx.chain.write().unwrap() = view;

    let r = get_json(&node.app, "/reputation").await;
    assert_eq!(r.status, StatusCode::OK);
    let p = &r.json;
    assert_eq!(p["min_eligible"], min);
    assert_eq!(p["count"], 3);
    let accounts = p["accounts"].as_array().unwrap();
    let order: Vec<&str> = accounts
        .iter()
        .map(|a| a["account"].as_str().unwrap())
        .collect();
    let (a, n, b) = (
        alice().account().to_hex(),
        node_key().account().to_hex(),
        bob().to_hex(),
    );
    assert_eq!(order, vec![a.as_str(), n.as_str(), b.as_str()]);
    assert_eq!(accounts[0]["rank"], 1);
    assert_eq!(accounts[0]["eligible"], true);
    assert_eq!(accounts[1]["evaluator_of"], json!(["quadratic"]));
    assert_eq!(accounts[2]["eligible"], false);
    assert_eq!(accounts[2]["reputation"], min - 1);

    let r = get_json(&node.app, "/reputation?limit=1&offset=1").await;
    assert_eq!(r.json["accounts"][0]["account"], n);
    assert_eq!(r.json["accounts"][0]["rank"], 2);
    assert_eq!(r.json["has_more"], true);
    assert_400(&node.app, "/reputation?limit=1000", "limit_too_large").await;
    assert_400(&node.app, "/reputation?offset=10001", "offset_too_large").await;
}

// === /coin ===

#[tokio::test]
async fn coin_reports_supply_reward_and_halvings() {
    let node = test_node(4).await;
    let r = get_json(&node.app, "/coin").await;
    assert_eq!(r.status, StatusCode::OK);
    let c = &r.json;
    let state = node.ctx.view().state;
    assert_eq!(c["height"], 4);
    assert_eq!(c["issued"], state.issued.0);
    assert_eq!(c["burned"], state.burned.0);
    assert_eq!(c["supply"], state.supply().0);
    assert_eq!(c["max_supply"], Amount::from_doin(21_000_000).0);
    assert_eq!(
        c["remaining"],
        Amount::from_doin(21_000_000).0 - state.issued.0
    );
    assert_eq!(c["next_block_reward"], Amount::from_doin(50).0);
    assert_eq!(c["next_block_reward_display"], "50 DOIN");
    assert_eq!(c["current_era"], 0);
    assert_eq!(c["next_halving_height"], 210_001);
    assert_eq!(
        c["reward_split_percent"],
        json!({"optimizers": 65, "evaluators": 30, "proposer": 5})
    );
    let halvings = c["halvings"].as_array().unwrap();
    assert_eq!(halvings[0]["block_subsidy"], Amount::from_doin(50).0);
    assert_eq!(halvings[1]["first_height"], 210_001);
    assert_eq!(halvings[1]["block_subsidy"], Amount::from_doin(25).0);
    assert!(
        halvings.len() > 30 && halvings.len() < 64,
        "{}",
        halvings.len()
    );
    let last = halvings.last().unwrap();
    assert_eq!(last["block_subsidy"], 1, "the last era pays one base unit");
}

// === /stats, /stats/export.csv ===

/// A chain with an accepted, a rejected and a no-quorum verdict and an expired commit.
async fn chain_with_verdicts(node: &TestNode) {
    add_block(
        &node.ctx,
        vec![alice_tx(
            0,
            TxKind::Commit {
                domain: quadratic(),
                commitment: Hash32([0x55; 32]),
                stake: Amount(20_000),
            },
        )],
    )
    .await;
    let records = [
        verdict(
            1,
            Verdict::Rejected {
                reason: RejectReason::ClaimNotReproduced,
                median: -50.0,
            },
            -3.0,
        ),
        verdict(
            2,
            Verdict::Accepted {
                median: -0.5,
                credit: 9_999.5,
            },
            -0.5,
        ),
        verdict(
            3,
            Verdict::NoQuorum {
                votes: 0,
                needed: 1,
            },
            -0.1,
        ),
    ];
    for record in records {
        add_block_with_receipt(&node.ctx, Vec::new(), |r| r.verdicts.push(record)).await;
    }
    for _ in 0..node.ctx.params.reveal_window {
        add_block(&node.ctx, Vec::new()).await;
    }
}

#[tokio::test]
async fn stats_count_verdicts_and_time_to_target() {
    let node = test_node(1).await;
    chain_with_verdicts(&node).await;
    let r = get_json(&node.app, "/stats").await;
    assert_eq!(r.status, StatusCode::OK);
    let s = &r.json;
    let tip = node.ctx.view().state.height;
    assert_eq!(s["height"], tip);
    assert_eq!(s["scanned_to"], tip);
    assert_eq!(s["complete"], true);
    let d = &s["domains"][0];
    assert_eq!(d["domain_id"], "quadratic");
    assert_eq!(
        (
            d["verdicts"].as_u64(),
            d["accepted"].as_u64(),
            d["rejected"].as_u64()
        ),
        (Some(3), Some(1), Some(1))
    );
    assert_eq!(d["no_quorum"], 1);
    assert_eq!(d["expired"], 1, "the unrevealed commit");
    assert_eq!(d["pending"], 0);
    assert_eq!(d["rounds"], 3);
    assert_eq!(d["target_performance"], -1.0);
    assert_eq!(d["first_verdict_height"], 3);
    assert_eq!(d["last_verdict_height"], 5);
    let reached = &d["target_reached"];
    assert_eq!(
        reached["height"], 4,
        "the accepted -0.5 beats the target -1.0"
    );
    assert_eq!(reached["performance"], -0.5);
    let b4 = node.ctx.store.block_by_height(4).await.unwrap().unwrap();
    assert_eq!(
        reached["time_to_target_ms"],
        b4.header.timestamp_ms - node.ctx.params.genesis_time_ms
    );
    // The tally is cached over final blocks; asking again (and after more blocks) agrees.
    add_block(&node.ctx, Vec::new()).await;
    let again = get_json(&node.app, "/stats").await.json;
    assert_eq!(again["domains"][0]["verdicts"], 3);
    assert_eq!(again["domains"][0]["expired"], 1);
    assert_eq!(again["scanned_to"], tip + 1);
}

/// A CSV response: status, content type and the body's lines.
async fn get_csv(app: &Router, uri: &str) -> (StatusCode, axum::http::HeaderMap, Vec<String>) {
    let resp = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    (status, headers, text.lines().map(str::to_owned).collect())
}

#[tokio::test]
async fn stats_export_is_csv_of_verdicts_by_height_range() {
    let node = test_node(1).await;
    chain_with_verdicts(&node).await;
    let (status, headers, lines) = get_csv(&node.app, "/stats/export.csv").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    assert!(
        headers.get(header::LINK).is_none(),
        "the default range ends at the tip"
    );
    assert_eq!(lines[0], super::super::stats::EXPORT_COLUMNS);
    assert_eq!(lines.len(), 4, "{lines:?}");
    let ts3 = node
        .ctx
        .store
        .block_by_height(3)
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp_ms;
    assert_eq!(
        lines[1],
        format!(
            "3,{ts3},quadratic,{},{},-3,-50,rejected_claim_not_reproduced,0,0,2000,1",
            Hash32([1; 32]),
            alice().account().to_hex()
        )
    );
    assert!(lines[2].contains(",accepted,9999.5,5,0,1"), "{}", lines[2]);
    assert!(
        lines[3].contains(",-0.1,,no_quorum,0,0,2000,1"),
        "{}",
        lines[3]
    );

    let (_, headers, lines) =
        get_csv(&node.app, "/stats/export.csv?from=0&to=3&domain=quadratic").await;
    assert_eq!(lines.len(), 2);
    assert_eq!(
        headers[header::LINK],
        "</stats/export.csv?from=4&to=7&domain=quadratic>; rel=\"next\""
    );
    let (_, _, lines) = get_csv(&node.app, "/stats/export.csv?from=4&to=4").await;
    assert_eq!(lines.len(), 2);
    assert!(lines[1].starts_with("4,"));

    // Errors stay JSON.
    assert_400(
        &node.app,
        "/stats/export.csv?from=0&to=10000",
        "range_too_large",
    )
    .await;
    assert_400(&node.app, "/stats/export.csv?from=3&to=2", "invalid_range").await;
    assert_400(
        &node.app,
        "/stats/export.csv?domain=B%20A%20D",
        "invalid_domain",
    )
    .await;
    let r = get_json(&node.app, "/stats/export.csv?domain=other").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

// === CORS settings ===

async fn node_with_http(http: &HttpConfig) -> (TestNode, Router) {
    let node = test_node(0).await;
    let app = router_with(Arc::clone(&node.ctx), Arc::clone(&node.inference), http);
    (node, app)
}

fn with_origin(uri: &str, origin: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::ORIGIN, origin)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn cors_origins_follow_the_http_config() {
    let listed = HttpConfig {
        cors_origins: vec!["https://dash.example".into()],
    };
    let (_node, app) = node_with_http(&listed).await;
    let r = send(&app, with_origin("/health", "https://dash.example")).await;
    assert_eq!(
        r.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://dash.example"
    );
    let r = send(&app, with_origin("/health", "https://evil.example")).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the request is served; the browser withholds it"
    );
    assert!(r.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());

    let none = HttpConfig {
        cors_origins: Vec::new(),
    };
    let (_node, app) = node_with_http(&none).await;
    let r = send(&app, with_origin("/health", "https://dash.example")).await;
    assert!(r.headers.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());

    let (_node, app) = node_with_http(&HttpConfig::default()).await;
    let r = send(&app, with_origin("/health", "https://any.example")).await;
    assert_eq!(r.headers[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}

// === /openapi.json ===

/// Resolves a local `$ref` (`#/components/schemas/Name`) in `doc`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

/// Every `$ref` string anywhere under `v`.
fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(s)) => out.push(s.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn openapi_document_is_well_formed_and_every_ref_resolves() {
    let node = test_node(0).await;
    let r = get_json(&node.app, "/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = &r.json;
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let paths = doc["paths"].as_object().unwrap();
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    assert!(schemas.contains_key("ApiError"));
    let mut all = Vec::new();
    refs(doc, &mut all);
    assert!(all.len() > 50, "{} refs", all.len());
    for reference in &all {
        assert!(
            reference.starts_with("#/components/schemas/") && resolve(doc, reference).is_some(),
            "unresolved $ref {reference}"
        );
    }
    let mut operation_ids = BTreeSet::new();
    for (path, item) in paths {
        assert!(path.starts_with('/'), "{path}");
        for (method, op) in item.as_object().unwrap() {
            assert!(
                ["get", "post"].contains(&method.as_str()),
                "{method} {path}"
            );
            assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()));
            assert!(operation_ids.insert(op["operationId"].as_str().unwrap().to_owned()));
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("200") && responses.contains_key("500"),
                "{method} {path}"
            );
            // Every `{name}` in the path is a declared path parameter, and nothing else is.
            let declared: BTreeSet<&str> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap())
                .collect();
            let templated: BTreeSet<&str> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
                .collect();
            assert_eq!(declared, templated, "{method} {path}");
        }
    }
    // Shapes come from the handlers' types: spot-check a few.
    assert_eq!(
        paths["/mempool"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
            ["$ref"],
        "#/components/schemas/MempoolPage"
    );
    let params: Vec<&str> = paths["/mempool"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(params, vec!["limit", "offset"]);
    assert!(schemas["MempoolPage"]["properties"]["suggested_bid"].is_object());
    assert!(schemas["Status"]["properties"]["chain_height"].is_object());
    assert!(schemas["BlockReceipt"]["properties"]["verdicts"].is_object());
    assert_eq!(
        paths["/tx"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/SignedTx"
    );
    assert!(
        paths["/stats/export.csv"]["get"]["responses"]["200"]["content"]["text/csv; charset=utf-8"]
            .is_object()
    );
    // OpenAPI 3.0 has no tuple `items` arrays and no `const`.
    let text = doc.to_string();
    assert!(
        !text.contains("\"items\":["),
        "tuple items left in the document"
    );
    assert!(!text.contains("\"const\":"));
}

/// The `.route("...")` paths registered in the http module's sources (this file's
/// neighbours), so a route added anywhere in `http/` is seen.
fn registered_routes() -> BTreeSet<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
    let mut out = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut rest = text.as_str();
        while let Some(i) = rest.find(".route(") {
            rest = &rest[i + ".route(".len()..];
            let trimmed = rest.trim_start();
            if let Some(lit) = trimmed.strip_prefix('"') {
                let end = lit.find('"').unwrap();
                out.insert(lit[..end].to_owned());
            }
        }
    }
    out
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_route_is_served() {
    let documented: BTreeSet<String> = ROUTES.iter().map(|r| r.path.to_owned()).collect();
    let registered = registered_routes();
    assert!(registered.len() >= 20, "{registered:?}");
    let undocumented: Vec<_> = registered.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi::ROUTES: {undocumented:?}"
    );
    let unregistered: Vec<_> = documented.difference(&registered).collect();
    assert!(
        unregistered.is_empty(),
        "documented but not registered: {unregistered:?}"
    );

    // Each documented method and path reaches a handler, not the fallbacks. Only the head
    // of the response is read (`/events` never ends).
    let node = test_node(1).await;
    for r in ROUTES {
        let uri = r.path.replace("{id}", "quadratic");
        let method = match r.method {
            DocMethod::Get => Method::GET,
            DocMethod::Post => Method::POST,
        };
        let req = Request::builder()
            .method(method)
            .uri(&uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let resp = node.app.clone().oneshot(req).await.unwrap();
        assert_ne!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{r:?}");
        if resp.status() == StatusCode::NOT_FOUND {
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            let json: Value = serde_json::from_slice(&body).unwrap();
            assert!(
                !json["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("no route for"),
                "{r:?}: {json}"
            );
        }
    }
    // And the document has exactly these operations.
    let doc = openapi::document();
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.insert(format!("{method} {path}"));
        }
    }
    let table: BTreeSet<String> = ROUTES
        .iter()
        .map(|r| format!("{} {}", r.method.as_str(), r.path))
        .collect();
    assert_eq!(ops, table);
}

/// Validates the document with `openapi-spec-validator` from the venv that
/// `scripts/setup-openapi-validator.sh` creates (no network at test time). Without the
/// venv the test says so and passes, unless `DOIN_REQUIRE_TEST_TOOLS=1`.
#[tokio::test]
async fn openapi_document_passes_openapi_spec_validator() {
    let venv = std::env::var_os("DOIN_OPENAPI_VENV").map_or_else(
        || {
            std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/doin/openapi-venv")
        },
        std::path::PathBuf::from,
    );
    let validator = venv.join("bin/openapi-spec-validator");
    if !validator.exists() {
        let msg = format!(
            "{} is missing: run scripts/setup-openapi-validator.sh",
            validator.display()
        );
        assert!(
            std::env::var("DOIN_REQUIRE_TEST_TOOLS").as_deref() != Ok("1"),
            "{msg}"
        );
        eprintln!("skipped: {msg}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(
        &file,
        serde_json::to_vec_pretty(&openapi::document()).unwrap(),
    )
    .unwrap();
    let out = std::process::Command::new(&validator)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
