//! Paid inference end to end, against the real `doin-node` binary on loopback: a client
//! funded by the node opens a payment channel with the `wallet` command line, pays for 100
//! queries with vouchers (the `doin-client` crate), closes; the node settles and collects by
//! itself, and every balance on chain comes out exact to the base unit.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{get_json as get, wait_for, wallet, write_solo_config, Node, BIN};
use doin_client::{ChannelBook, ClientError, NodeClient, Wallet};
use doin_core::amount::Amount;
use doin_core::fee::{charge, FeeBid};
use doin_core::hash::Hash32;
use doin_core::identity::{AccountId, Keypair};
use doin_core::params::DomainId;
use serde_json::{json, Value};

const QUERIES: u64 = 100;

/// (height, balance) of an account, read in one view.
fn balance_at(port: u16, account: &AccountId) -> (u64, Amount) {
    let a = get(port, &format!("/account/{account}?limit=0"));
    (
        a["height"].as_u64().unwrap(),
        Amount(a["balance"].as_u64().unwrap()),
    )
}

/// What the blocks `from..=to` did to `account`: what they paid it (reward shares and tips,
/// from their receipts) and the fees of its own transactions, with the kinds of those.
fn account_flows(
    port: u16,
    account: &AccountId,
    from: u64,
    to: u64,
) -> (Amount, Amount, Vec<String>) {
    let (mut paid, mut fees, mut kinds) = (0u64, 0u64, Vec::new());
    for h in from..=to {
        let block = get(port, &format!("/chain/block/{h}"));
        let base_fee = Amount(block["header"]["base_fee"].as_u64().unwrap());
        if let Some(p) = block["receipt"]["payouts"][account.to_hex()].as_u64() {
            paid += p;
        }
        for entry in block["txs"].as_array().unwrap() {
            let body = &entry["tx"]["body"];
            if body["sender"] != account.to_hex() {
                continue;
            }
            let bid: FeeBid = serde_json::from_value(body["fee"].clone()).unwrap();
            fees += charge(&bid, base_fee).unwrap().total().units();
            kinds.push(body["kind"]["type"].as_str().unwrap().to_string());
        }
    }
    (Amount(paid), Amount(fees), kinds)
}

#[test]
fn a_client_pays_100_queries_through_a_channel_and_every_balance_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(&write_solo_config(
        dir.path(),
        json!({"inference": {"mode": "paid", "price": 25_000}}),
    ));
    let port = node.port;
    node.wait_height(1, Duration::from_secs(60));
    let domain = DomainId::new("quadratic").unwrap();
    let node_key_path = dir.path().join("data").join("identity.key");
    let provider = Keypair::load(&node_key_path).unwrap().account();

    // The optimizer reaches its target: from then on the node only mines, so its balance
    // moves only by block rewards, tips and this channel.
    wait_for(
        "a converged domain with a served champion",
        Duration::from_secs(120),
        || {
            let s = get(port, "/status");
            let offers = get(port, "/inference");
            s["domains"][0]["converged"] == true && offers["offers"][0]["ready"] == true
        },
    );
    let price = Amount(25_000);
    assert_eq!(get(port, "/inference")["offers"][0]["price"], price.units());

    // A fresh client, funded by the node through the wallet command line.
    let client_key_path = dir.path().join("client.key");
    let client_key = Keypair::generate();
    client_key.save(&client_key_path).unwrap();
    let client = client_key.account();
    let out = wallet(
        port,
        &node_key_path,
        &["transfer", "--to", &client.to_hex(), "--amount", "5"],
    );
    assert!(out.contains("sent 5 DOIN"), "{out}");
    let (h0, funded) = balance_at(port, &client);
    assert_eq!(funded, Amount::from_doin(5));

    // Without a voucher the node answers 402 with its price and account.
    let node_client = NodeClient::new(&format!("http://127.0.0.1:{port}"));
    match node_client.infer(&domain, &json!({"features": [0, 0, 0, 0]}), None) {
        Err(ClientError::PaymentRequired {
            payment: Some(p), ..
        }) => {
            assert_eq!((p.price, p.provider), (price, provider));
        }
        other => panic!("expected 402, got {other:?}"),
    }

    // Open a channel with the command line, then one query with it.
    let out = wallet(
        port,
        &client_key_path,
        &["channel", "open", "--deposit", "1", "--lifetime", "2000"],
    );
    let channel = Hash32::from_hex(out.split_whitespace().nth(1).unwrap()).unwrap();
    let out = wallet(
        port,
        &client_key_path,
        &[
            "infer",
            "--domain",
            "quadratic",
            "--input",
            r#"{"features":[1,2,3,4]}"#,
            "--max-price",
            "25000u",
        ],
    );
    let first: Value = serde_json::from_str(&out).unwrap();
    assert!(
        first["prediction"]["distance"].as_f64().unwrap() >= 0.0,
        "{first}"
    );
    assert_eq!(first["paid_total"], price.units());
    // A price above the caller's maximum is refused before anything is signed.
    let out = Command::new(BIN)
        .args([
            "wallet",
            "--node",
            &format!("http://127.0.0.1:{port}"),
            "--key",
        ])
        .arg(&client_key_path)
        .args([
            "infer",
            "--domain",
            "quadratic",
            "--input",
            "{}",
            "--max-price",
            "24999u",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("above the maximum"));

    // The other 99 queries through the client library, sharing the CLI's channel book.
    let wallet_api = Wallet::connect(node_client.clone(), client_key.clone()).unwrap();
    let mut book = ChannelBook::open(&client_key_path.with_extension("channels.json")).unwrap();
    for i in 1..QUERIES {
        let x = i as f64 / 10.0;
        let answer = wallet_api
            .infer(
                &mut book,
                &channel,
                &domain,
                &json!({"features": [x, 0, 0, 0]}),
                price,
            )
            .unwrap();
        assert_eq!(answer.paid, Some(Amount(price.units() * (i + 1))));
        assert_eq!(answer.price, price);
    }
    let paid = Amount(price.units() * QUERIES);
    let c = get(port, &format!("/channel/{channel}"));
    assert_eq!(
        (c["best_voucher"].as_u64(), c["queries"].as_u64()),
        (Some(paid.units()), Some(QUERIES))
    );

    // A replayed voucher pays nothing.
    let replay = doin_core::channel::Voucher::sign(&client_key, channel, paid);
    match node_client.infer(&domain, &json!({"features": [0, 0, 0, 0]}), Some(&replay)) {
        Err(ClientError::PaymentRequired {
            code,
            payment: Some(p),
            ..
        }) => {
            assert_eq!(code, "voucher_too_low");
            assert_eq!(p.paid, Some(paid));
        }
        other => panic!("expected 402, got {other:?}"),
    }

    // The client closes; the node settles its best voucher and, after the window, collects.
    let (h1, provider_before) = balance_at(port, &provider);
    let out = wallet(
        port,
        &client_key_path,
        &["channel", "close", &channel.to_hex()],
    );
    assert!(out.contains("closing"), "{out}");
    wait_for(
        "the node to settle and collect",
        Duration::from_secs(60),
        || {
            ureq::get(&format!("http://127.0.0.1:{port}/channel/{channel}"))
                .call()
                .is_err()
        },
    );
    let (h2, provider_after) = balance_at(port, &provider);
    let (_, client_after) = balance_at(port, &client);

    // Client: funded − paid − its own fees (open, close); the rest of the deposit came back.
    let (client_income, client_fees, client_kinds) = account_flows(port, &client, h0 + 1, h2);
    assert_eq!(client_income, Amount::ZERO);
    assert_eq!(client_kinds, ["channel_open", "channel_close"]);
    assert_eq!(
        client_after,
        Amount(funded.units() - paid.units() - client_fees.units()),
        "client: 5 DOIN − {paid} paid − {client_fees} fees"
    );
    // Provider: + paid, + block rewards and tips, − its settle and collect fees.
    let (earned, provider_fees, provider_kinds) = account_flows(port, &provider, h1 + 1, h2);
    assert_eq!(provider_kinds, ["channel_settle", "channel_collect"]);
    assert_eq!(
        provider_after,
        Amount(provider_before.units() + paid.units() + earned.units() - provider_fees.units()),
        "provider: + {paid} paid + {earned} block income − {provider_fees} fees"
    );
    // Settling or collecting again is refused: the channel no longer exists.
    let status = get(port, "/status");
    assert_eq!(
        status["total_supply"].as_u64().unwrap(),
        status["issued"].as_u64().unwrap() - status["burned"].as_u64().unwrap()
    );
    let log = node.stop();
    assert!(log.contains("settle of"), "{log}");
    assert!(log.contains("collect of"), "{log}");
}
