//! Who may propose the next block, and from when.
//!
//! Every node computes the same order for each height from the parent state alone, so honest
//! nodes do not race each other into same-height forks:
//!
//! * The **producer set** is the accounts bonded as evaluators in any domain (they validate
//!   every block anyway, and their bond is at stake). Sorted by account id.
//! * The **primary** for height `h` is member `h mod n` (round robin: a proposer cannot grind
//!   a block hash to become primary again). Member `i` has rank `(i - h) mod n`.
//! * A member of rank `r` may propose only a block whose timestamp is at least
//!   `r × proposer_timeout_ms` after its parent's: if the primary is offline, the next in line
//!   takes over after one timeout, and so on.
//! * An account outside the set has rank `n`: it may propose once every member has had its
//!   turn, so a chain whose evaluators all stopped producing does not stall. With an empty set
//!   (a fresh development chain) everyone has rank 0.
//!
//! The DESIGN suggests the optimizer whose verdict crossed the threshold as the primary. That
//! choice depends on the block's own contents (which vote lands in it), so a proposer could
//! arrange its block to make itself primary, and optimizers need not run a producer at all;
//! the bonded-evaluator round robin is known before the block and needs neither.

use std::collections::BTreeSet;

use crate::identity::AccountId;
use crate::params::ChainParams;
use crate::state::ChainState;

/// The accounts scheduled to propose, sorted: every account bonded as an evaluator in some
/// domain of `parent`.
pub fn producer_set(parent: &ChainState) -> Vec<AccountId> {
    let members: BTreeSet<AccountId> = parent
        .evaluators
        .values()
        .flat_map(|members| members.keys().copied())
        .collect();
    members.into_iter().collect()
}

/// `proposer`'s place in line for the block after `parent`: 0 is the primary.
pub fn proposer_rank(parent: &ChainState, proposer: &AccountId) -> u64 {
    rank_in(&producer_set(parent), parent.height + 1, proposer)
}

/// Rank of `proposer` for `height` among `set` (sorted): see the module documentation.
pub fn rank_in(set: &[AccountId], height: u64, proposer: &AccountId) -> u64 {
    let n = set.len() as u64;
    match set.binary_search(proposer) {
        Ok(index) => (index as u64 + n - height % n) % n,
        Err(_) => n,
    }
}

/// The earliest timestamp a proposer of `rank` may give the block after `parent`.
pub fn earliest_timestamp(parent: &ChainState, params: &ChainParams, rank: u64) -> u64 {
    parent
        .tip_time_ms
        .saturating_add(rank.saturating_mul(params.proposer_timeout_ms))
}

/// The scheduled order for the block after `parent`: primary first.
pub fn schedule(parent: &ChainState) -> Vec<AccountId> {
    let set = producer_set(parent);
    let n = set.len();
    if n == 0 {
        return Vec::new();
    }
    let start = ((parent.height + 1) % n as u64) as usize;
    (0..n).map(|i| set[(start + i) % n]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Keypair;
    use crate::params::ChainParams;
    use proptest::prelude::*;

    fn accounts(n: u8) -> Vec<AccountId> {
        let mut v: Vec<AccountId> = (0..n)
            .map(|i| Keypair::from_seed([i + 1; 32]).account())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn an_empty_set_lets_everyone_propose_at_once() {
        let a = accounts(1)[0];
        assert_eq!(rank_in(&[], 7, &a), 0);
    }

    #[test]
    fn outsiders_come_after_every_member() {
        let set = accounts(3);
        let outsider = Keypair::from_seed([99; 32]).account();
        assert_eq!(rank_in(&set, 5, &outsider), 3);
    }

    #[test]
    fn the_schedule_lists_members_by_rank() {
        let mut params = ChainParams::dev("s");
        let keys = accounts(4);
        let domain = params.domains[0].id.clone();
        params.genesis_evaluators = keys.iter().map(|k| (domain.clone(), *k)).collect();
        let (_, state) = ChainState::genesis(&params);
        let order = schedule(&state);
        assert_eq!(order.len(), 4);
        for (rank, member) in order.iter().enumerate() {
            assert_eq!(proposer_rank(&state, member), rank as u64);
        }
        // Height 1 is primary member 1 % 4.
        assert_eq!(order[0], keys[1]);
        assert_eq!(
            earliest_timestamp(&state, &params, 2),
            state.tip_time_ms + 2 * params.proposer_timeout_ms
        );
    }

    proptest! {
        /// Every height has exactly one member of each rank, and the primary rotates.
        #[test]
        fn ranks_are_a_permutation(n in 1u8..9, height in 0u64..1_000_000) {
            let set = accounts(n);
            let mut ranks: Vec<u64> = set.iter().map(|a| rank_in(&set, height, a)).collect();
            ranks.sort_unstable();
            prop_assert_eq!(ranks, (0..u64::from(n)).collect::<Vec<_>>());
            let primary = set.iter().position(|a| rank_in(&set, height, a) == 0).unwrap();
            let next = set.iter().position(|a| rank_in(&set, height + 1, a) == 0).unwrap();
            prop_assert_eq!(next, (primary + 1) % usize::from(n));
        }
    }
}
