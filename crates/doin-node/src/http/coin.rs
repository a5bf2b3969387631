//! `GET /coin`: supply, issuance, burns, the cap and the halving schedule.
//!
//! Everything here is computed from the chain view and the pure economics of `doin-core`
//! (no storage access), so it is as cheap as `/status`.

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;

use doin_core::amount::Amount;
use doin_core::economics::{
    block_subsidy, capped_subsidy, scheduled_issuance, EVALUATOR_PERCENT, HALVING_INTERVAL,
    INITIAL_SUBSIDY, MAX_SUPPLY, OPTIMIZER_PERCENT, PROPOSER_PERCENT,
};

use super::{json_with_capacity, ApiState};

/// One era of the halving schedule.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct Era {
    /// 0-based.
    era: u64,
    first_height: u64,
    last_height: u64,
    /// Subsidy of each block of the era.
    block_subsidy: Amount,
}

/// How each block's subsidy is split, in percent.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct RewardSplit {
    optimizers: u64,
    evaluators: u64,
    proposer: u64,
}

/// `GET /coin`.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct CoinView {
    height: u64,
    /// Coins in circulation: `issued − burned`.
    supply: Amount,
    supply_display: String,
    /// Coins ever created: genesis allocations and block rewards.
    issued: Amount,
    /// Coins ever destroyed: base fees and stake burns.
    burned: Amount,
    /// Issuance can never pass this (genesis allocations included).
    max_supply: Amount,
    /// `max_supply − issued`.
    remaining: Amount,
    /// What the next block may mint (its subsidy, capped by what remains).
    next_block_reward: Amount,
    next_block_reward_display: String,
    /// The era the next block is in.
    current_era: u64,
    /// First height of the next era, where the subsidy halves.
    next_halving_height: u64,
    halving_interval: u64,
    initial_block_subsidy: Amount,
    /// What the subsidy schedule alone has issued up to the tip.
    scheduled_issuance: Amount,
    reward_split_percent: RewardSplit,
    /// Every era with a positive subsidy (the subsidy is an integer right shift, so it
    /// reaches zero after a few dozen eras).
    halvings: Vec<Era>,
}

/// Eras with a positive subsidy: the schedule as a list (bounded: the shift clears the
/// subsidy by era 33).
fn halvings() -> Vec<Era> {
    (0u64..64)
        .map_while(|era| {
            let first = era.checked_mul(HALVING_INTERVAL)?.checked_add(1)?;
            let subsidy = block_subsidy(first);
            (subsidy > Amount::ZERO).then(|| Era {
                era,
                first_height: first,
                last_height: first.saturating_add(HALVING_INTERVAL - 1),
                block_subsidy: subsidy,
            })
        })
        .collect()
}

pub(super) async fn coin(State(api): State<ApiState>) -> Response {
    let view = api.ctx.view();
    let state = &*view.state;
    let next = state.height.saturating_add(1);
    let next_reward = capped_subsidy(next, state.issued);
    let era = (next - 1) / HALVING_INTERVAL;
    let supply = state.supply();
    let body = CoinView {
        height: state.height,
        supply,
        supply_display: supply.to_string(),
        issued: state.issued,
        burned: state.burned,
        max_supply: MAX_SUPPLY,
        remaining: MAX_SUPPLY.saturating_sub(state.issued),
        next_block_reward: next_reward,
        next_block_reward_display: next_reward.to_string(),
        current_era: era,
        next_halving_height: era
            .saturating_add(1)
            .saturating_mul(HALVING_INTERVAL)
            .saturating_add(1),
        halving_interval: HALVING_INTERVAL,
        initial_block_subsidy: INITIAL_SUBSIDY,
        scheduled_issuance: scheduled_issuance(state.height),
        reward_split_percent: RewardSplit {
            optimizers: OPTIMIZER_PERCENT,
            evaluators: EVALUATOR_PERCENT,
            proposer: PROPOSER_PERCENT,
        },
        halvings: halvings(),
    };
    json_with_capacity(&body, 4096)
}
