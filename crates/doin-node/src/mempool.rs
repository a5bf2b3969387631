//! The transaction pool: bounded, ordered by tip, one queue per sender in nonce order.
//!
//! Admission (the caller has already checked signature and statelessly valid fields):
//! - a nonce below the account's next nonce is a replay and is rejected;
//! - a nonce that would leave a gap after the sender's queued transactions is rejected;
//! - a transaction with a nonce already queued replaces it only with a higher tip;
//! - when full, the lowest-tip transaction is evicted if the newcomer pays more, otherwise
//!   the newcomer is rejected (the Python original had this comparison inverted).
//!
//! Block candidates come out highest tip first while keeping each sender's nonce order.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use doin_core::amount::Amount;
use doin_core::identity::AccountId;
use doin_core::tx::{SignedTx, TxId};
use thiserror::Error;

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MempoolError {
    #[error("nonce {got} was already used (the account's next nonce is {next})")]
    Replay { got: u64, next: u64 },
    #[error("nonce {got} leaves a gap: the next acceptable nonce for this sender is {expected}")]
    NonceGap { got: u64, expected: u64 },
    #[error("a transaction with nonce {nonce} is already pending with a tip of {existing}; a replacement must pay more")]
    Underpriced { nonce: u64, existing: Amount },
    #[error(
        "the pool is full and this tip ({tip}) does not beat the lowest pending tip ({lowest})"
    )]
    Full { tip: Amount, lowest: Amount },
    #[error("transaction {0} is already pending")]
    Duplicate(TxId),
}

#[derive(Debug, Clone)]
struct Entry {
    id: TxId,
    tx: SignedTx,
    tip: Amount,
}

/// The pool. Not thread-safe by itself: the node wraps it in a mutex.
#[derive(Debug)]
pub struct Mempool {
    capacity: usize,
    /// Per sender, pending transactions by nonce.
    by_sender: HashMap<AccountId, BTreeMap<u64, Entry>>,
    /// (tip, id) of every entry, lowest first: eviction looks here.
    by_tip: BTreeSet<(Amount, TxId, AccountId, u64)>,
    ids: HashMap<TxId, (AccountId, u64)>,
}

impl Mempool {
    pub fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "mempool capacity must be positive");
        Mempool {
            capacity,
            by_sender: HashMap::new(),
            by_tip: BTreeSet::new(),
            ids: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn contains(&self, id: &TxId) -> bool {
        self.ids.contains_key(id)
    }

    /// Whether `sender` has a pending transaction with `nonce`.
    pub fn has_nonce(&self, sender: &AccountId, nonce: u64) -> bool {
        self.by_sender
            .get(sender)
            .is_some_and(|q| q.contains_key(&nonce))
    }

    pub fn get(&self, id: &TxId) -> Option<&SignedTx> {
        let (sender, nonce) = self.ids.get(id)?;
        self.by_sender.get(sender)?.get(nonce).map(|e| &e.tx)
    }

    /// Most transactions the pool holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// A page of pending transactions, highest tip first (ties by id), for listing: skips
    /// `offset` entries and returns up to `limit`. Costs `O(offset + limit)`; only the
    /// returned transactions are cloned.
    pub fn page(&self, offset: usize, limit: usize) -> Vec<(TxId, SignedTx)> {
        self.by_tip
            .iter()
            .rev()
            .skip(offset)
            .take(limit)
            .filter_map(|(_, id, sender, nonce)| {
                let entry = self.by_sender.get(sender)?.get(nonce)?;
                Some((*id, entry.tx.clone()))
            })
            .collect()
    }

    /// The tip of the `rank`-th highest-tipped pending transaction (0 = the highest), if
    /// that many are pending: what a newcomer must beat to be among the first `rank + 1`.
    pub fn tip_at_rank(&self, rank: usize) -> Option<Amount> {
        self.by_tip.iter().rev().nth(rank).map(|(tip, ..)| *tip)
    }

    /// Admits `tx` (with id `id`) given the sender's next nonce on chain.
    pub fn insert(
        &mut self,
        id: TxId,
        tx: SignedTx,
        account_nonce: u64,
    ) -> Result<(), MempoolError> {
        if self.ids.contains_key(&id) {
            return Err(MempoolError::Duplicate(id));
        }
        let sender = tx.body.sender;
        let nonce = tx.body.nonce;
        let tip = tx.body.fee.tip;
        if nonce < account_nonce {
            return Err(MempoolError::Replay {
                got: nonce,
                next: account_nonce,
            });
        }
        let queue = self.by_sender.get(&sender);
        let expected = queue
            .and_then(|q| q.keys().next_back())
            .map_or(account_nonce, |last| last + 1)
            .max(account_nonce);
        if let Some(existing) = queue.and_then(|q| q.get(&nonce)) {
            if tip <= existing.tip {
                return Err(MempoolError::Underpriced {
                    nonce,
                    existing: existing.tip,
                });
            }
            let old = existing.id;
            self.remove(&old);
        } else if nonce > expected {
            return Err(MempoolError::NonceGap {
                got: nonce,
                expected,
            });
        } else if self.len() >= self.capacity {
            let &(lowest, lowest_id, lowest_sender, lowest_nonce) =
                self.by_tip.iter().next().expect("a full pool has entries");
            // Evicting the sender's own earlier nonce would leave the newcomer gapped.
            if tip <= lowest || (lowest_sender == sender && nonce > lowest_nonce) {
                return Err(MempoolError::Full { tip, lowest });
            }
            // Evict the lowest tip and everything its sender queued after it (now gapped).
            let doomed: Vec<TxId> = self.by_sender[&lowest_sender]
                .range(lowest_nonce..)
                .map(|(_, e)| e.id)
                .collect();
            debug_assert_eq!(doomed.first(), Some(&lowest_id));
            for d in doomed {
                self.remove(&d);
            }
        }
        self.by_tip.insert((tip, id, sender, nonce));
        self.ids.insert(id, (sender, nonce));
        self.by_sender
            .entry(sender)
            .or_default()
            .insert(nonce, Entry { id, tx, tip });
        Ok(())
    }

    /// Removes one transaction; returns whether it was pending.
    pub fn remove(&mut self, id: &TxId) -> bool {
        let Some((sender, nonce)) = self.ids.remove(id) else {
            return false;
        };
        if let Some(queue) = self.by_sender.get_mut(&sender) {
            if let Some(entry) = queue.remove(&nonce) {
                self.by_tip.remove(&(entry.tip, entry.id, sender, nonce));
            }
            if queue.is_empty() {
                self.by_sender.remove(&sender);
            }
        }
        true
    }

    /// Drops every transaction whose nonce is below its sender's next nonce (included in a
    /// block, or made stale by one).
    pub fn prune(&mut self, next_nonce: impl Fn(&AccountId) -> u64) {
        let stale: Vec<TxId> = self
            .by_sender
            .iter()
            .flat_map(|(sender, q)| {
                let next = next_nonce(sender);
                q.range(..next).map(|(_, e)| e.id).collect::<Vec<_>>()
            })
            .collect();
        for id in stale {
            self.remove(&id);
        }
    }

    /// Up to `max` candidates for a block: repeatedly the highest-tip head of any sender's
    /// queue, so each sender's transactions stay in nonce order.
    pub fn candidates(&self, max: usize) -> Vec<SignedTx> {
        let mut heads: BTreeSet<(std::cmp::Reverse<Amount>, AccountId, u64)> = BTreeSet::new();
        let mut iters: HashMap<AccountId, std::collections::btree_map::Values<'_, u64, Entry>> =
            HashMap::new();
        for (sender, queue) in &self.by_sender {
            let mut it = queue.values();
            if let Some(first) = it.next() {
                heads.insert((std::cmp::Reverse(first.tip), *sender, first.tx.body.nonce));
            }
            iters.insert(*sender, it);
        }
        let mut out = Vec::new();
        while out.len() < max {
            let Some(head) = heads.pop_first() else { break };
            let (_, sender, nonce) = head;
            out.push(self.by_sender[&sender][&nonce].tx.clone());
            if let Some(next) = iters.get_mut(&sender).and_then(Iterator::next) {
                heads.insert((std::cmp::Reverse(next.tip), sender, next.tx.body.nonce));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use doin_core::fee::FeeBid;
    use doin_core::identity::Keypair;
    use doin_core::tx::{TxBody, TxKind};

    fn tx(sender: u8, nonce: u64, tip: u64) -> (TxId, SignedTx) {
        let k = Keypair::from_seed([sender; 32]);
        let tx = TxBody {
            chain_id: "t".into(),
            sender: k.account(),
            nonce,
            fee: FeeBid {
                max_fee: Amount(1_000_000),
                tip: Amount(tip),
            },
            kind: TxKind::Transfer {
                to: Keypair::from_seed([0; 32]).account(),
                amount: Amount(1),
            },
        }
        .sign(&k);
        (tx.id(), tx)
    }

    fn add(pool: &mut Mempool, sender: u8, nonce: u64, tip: u64) -> Result<(), MempoolError> {
        let (id, t) = tx(sender, nonce, tip);
        pool.insert(id, t, 0)
    }

    #[test]
    fn replays_and_gaps_are_rejected() {
        let mut pool = Mempool::new(10);
        let (id, t) = tx(1, 0, 5);
        assert_eq!(
            pool.insert(id, t.clone(), 1),
            Err(MempoolError::Replay { got: 0, next: 1 })
        );
        assert_eq!(
            add(&mut pool, 1, 2, 5),
            Err(MempoolError::NonceGap {
                got: 2,
                expected: 0
            })
        );
        add(&mut pool, 1, 0, 5).unwrap();
        add(&mut pool, 1, 1, 5).unwrap();
        assert!(matches!(
            add(&mut pool, 1, 1, 5),
            Err(MempoolError::Duplicate(_))
        ));
        assert!(matches!(
            add(&mut pool, 1, 1, 4),
            Err(MempoolError::Underpriced { .. })
        ));
        add(&mut pool, 1, 1, 9).unwrap();
        assert_eq!(pool.len(), 2);
    }

    #[test]
    fn full_pool_evicts_the_lowest_tip_only_for_a_better_one() {
        let mut pool = Mempool::new(2);
        add(&mut pool, 1, 0, 5).unwrap();
        add(&mut pool, 2, 0, 7).unwrap();
        assert_eq!(
            add(&mut pool, 3, 0, 5),
            Err(MempoolError::Full {
                tip: Amount(5),
                lowest: Amount(5)
            })
        );
        add(&mut pool, 3, 0, 6).unwrap();
        assert_eq!(pool.len(), 2);
        let tips: Vec<u64> = pool
            .candidates(10)
            .iter()
            .map(|t| t.body.fee.tip.0)
            .collect();
        assert_eq!(tips, vec![7, 6]);
    }

    #[test]
    fn candidates_keep_nonce_order_and_prefer_tips() {
        let mut pool = Mempool::new(10);
        add(&mut pool, 1, 0, 1).unwrap();
        add(&mut pool, 1, 1, 100).unwrap();
        add(&mut pool, 2, 0, 50).unwrap();
        let order: Vec<(u64, u64)> = pool
            .candidates(10)
            .iter()
            .map(|t| (t.body.fee.tip.0, t.body.nonce))
            .collect();
        assert_eq!(order, vec![(50, 0), (1, 0), (100, 1)]);
        assert_eq!(pool.candidates(1).len(), 1);
    }

    #[test]
    fn prune_drops_included_nonces() {
        let mut pool = Mempool::new(10);
        add(&mut pool, 1, 0, 1).unwrap();
        add(&mut pool, 1, 1, 1).unwrap();
        pool.prune(|_| 1);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.candidates(5)[0].body.nonce, 1);
    }
}
