//! A small in-memory chain driver shared by the integration tests: builds each block with
//! `build_block`, then re-validates it with `apply_block` on the parent state, exactly as a
//! peer would, and checks coin conservation after every block.

#![allow(dead_code, clippy::unwrap_used)]

use doin_core::amount::Amount;
use doin_core::block::Block;
use doin_core::fee::FeeBid;
use doin_core::identity::{AccountId, Keypair};
use doin_core::params::{ChainParams, DomainId};
use doin_core::state::{BlockReceipt, ChainState};
use doin_core::tx::{SignedTx, TxBody, TxKind};

pub struct TestChain {
    pub params: ChainParams,
    pub state: ChainState,
    pub blocks: Vec<Block>,
    pub proposer: Keypair,
    pub now_ms: u64,
}

pub fn key(n: u8) -> Keypair {
    Keypair::from_seed([n; 32])
}

pub fn quadratic() -> DomainId {
    DomainId::new("quadratic").unwrap()
}

/// A multi-operator network: solo mode off, K = 3, four genesis evaluators (keys 11..=14),
/// funded optimizers (keys 1, 2), a client (3) and a provider (4).
pub fn network_params() -> ChainParams {
    let mut p = ChainParams::dev("test-net");
    p.solo_mode = false;
    p.domains[0].quorum_size = 3;
    p.domains[0].baseline_performance = -1000.0;
    p.domains[0].tolerance_abs = 0.5;
    p.domains[0].tolerance_rel = 0.05;
    p.domains[0].min_improvement = 0.01;
    p.genesis_allocations = (1..=4)
        .map(|n| (key(n).account(), Amount::from_doin(1_000)))
        .collect();
    p.genesis_allocations
        .extend((11..=14).map(|n| (key(n).account(), Amount::from_doin(10))));
    p.genesis_evaluators = (11..=14).map(|n| (quadratic(), key(n).account())).collect();
    p.validate().unwrap();
    p
}

impl TestChain {
    pub fn new(params: ChainParams) -> TestChain {
        let (genesis, state) = ChainState::genesis(&params);
        state.check_conservation().unwrap();
        let now_ms = params.genesis_time_ms;
        TestChain {
            params,
            state,
            blocks: vec![genesis],
            proposer: key(99),
            now_ms,
        }
    }

    pub fn nonce(&self, k: &Keypair) -> u64 {
        self.state.account(&k.account()).nonce
    }

    pub fn balance(&self, a: &AccountId) -> Amount {
        self.state.account(a).balance
    }

    /// A transaction from `k` with the next nonce and a fee bid that covers the base fee.
    pub fn tx(&self, k: &Keypair, kind: TxKind) -> SignedTx {
        self.tx_with_nonce(k, self.nonce(k), kind)
    }

    pub fn tx_with_nonce(&self, k: &Keypair, nonce: u64, kind: TxKind) -> SignedTx {
        TxBody {
            chain_id: self.params.chain_id.clone(),
            sender: k.account(),
            nonce,
            fee: FeeBid {
                max_fee: Amount(self.state.base_fee.0 * 2),
                tip: Amount(10),
            },
            kind,
        }
        .sign(k)
    }

    /// Mines one block after the empty-block interval (so it is valid with or without work),
    /// validates it as a peer would, and checks conservation. Returns the receipt and the
    /// ids of skipped transactions.
    pub fn mine(&mut self, txs: Vec<SignedTx>) -> (BlockReceipt, usize) {
        self.now_ms = self.state.empty_block_allowed_from(&self.params);
        let built = self
            .state
            .build_block(&self.params, &self.proposer, self.now_ms, txs)
            .unwrap();
        let (validated, receipt) = self
            .state
            .apply_block(&self.params, &built.block, Some(self.now_ms))
            .unwrap();
        assert_eq!(
            validated, built.state,
            "a peer re-executes the block to the same state"
        );
        assert_eq!(receipt, built.receipt);
        validated.check_conservation().unwrap();
        assert_eq!(built.block.header.state_root, validated.state_root());
        self.state = validated;
        self.blocks.push(built.block);
        (receipt, built.skipped.len())
    }

    /// Mines a block and asserts that every given transaction was included.
    pub fn mine_all(&mut self, txs: Vec<SignedTx>) -> BlockReceipt {
        let n = txs.len();
        let before = self.blocks.len();
        let (receipt, skipped) = self.mine(txs);
        assert_eq!(skipped, 0, "no transaction skipped");
        assert_eq!(self.blocks[before].txs.len(), n);
        receipt
    }

    /// Applies one transaction directly and returns the error text, if any.
    pub fn try_apply(&self, tx: &SignedTx) -> Result<(), String> {
        tx.verify_stateless(&self.params)
            .map_err(|e| e.to_string())?;
        let mut s = self.state.for_next_block();
        s.apply_tx(&self.params, tx, self.state.height + 1)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
