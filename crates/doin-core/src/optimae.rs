//! The optimae lifecycle rules (DESIGN.md §3.3): commitment, quorum and data seeds, the
//! reputation-weighted quorum draw, and the verdict.
//!
//! # Why these shapes
//!
//! * The **commitment** binds the domain, the optimizer's key, the parameters' hash, the
//!   claimed performance and a salt. Binding the key stops another node from re-committing a
//!   revealed optimae as its own (front-running); binding the claim stops the optimizer from
//!   raising it after seeing the evaluators' results.
//! * The **quorum seed** is derived from the hash of the block that included the commit. The
//!   optimizer could not know that hash when it committed, so it cannot grind commitments until
//!   it gets a friendly quorum. Each evaluator's **data seed** adds its own key: every
//!   evaluator scores on different synthetic data that nobody could prepare for in advance, and
//!   anyone can recompute which data that was.
//! * The **quorum draw** uses integer arithmetic only. Weighted sampling without replacement is
//!   often written with `ln`/`exp` (Efraimidis–Spirakis keys), but libm results differ across
//!   platforms, and a quorum that two nodes compute differently is a fork.
//! * The **verdict** is a pure function of the rules, the claim, the champion and the votes,
//!   independent of the order votes arrived in, so every node reaches the same verdict.
//!   Credit is the *verified* improvement (median measurement minus champion), never the claim.
//!
//! Performance is always higher-is-better; a domain whose natural metric is a loss reports its
//! negation.

use serde::{Deserialize, Serialize};

use crate::encode::{put, Encode};
use crate::hash::{Hash32, HashKind};
use crate::identity::AccountId;
use crate::params::{DomainId, DomainParams};

// === commitment and seeds ===

/// The commitment an optimizer publishes before revealing:
/// `H_commit(domain ‖ optimizer ‖ params_hash ‖ claim ‖ salt)` over the canonical encoding
/// (the domain id length-prefixed, the claim as its IEEE-754 bits, the rest fixed-width).
pub fn commitment(
    domain: &DomainId,
    optimizer: &AccountId,
    params_hash: &Hash32,
    claim: f64,
    salt: &[u8; 32],
) -> Hash32 {
    let mut preimage = Vec::with_capacity(4 + domain.as_str().len() + 32 + 32 + 8 + 32);
    domain.encode(&mut preimage);
    optimizer.encode(&mut preimage);
    params_hash.encode(&mut preimage);
    put::f64(&mut preimage, claim);
    preimage.extend_from_slice(salt);
    HashKind::Commit.hash(&preimage)
}

/// The seed that selects an optimae's quorum: `H_quorum(commit_block_hash ‖ commitment)`.
///
/// `commit_block_hash` is the hash of the block that included the commit, unknown to the
/// optimizer when it committed.
pub fn quorum_seed(commit_block_hash: &Hash32, commitment: &Hash32) -> Hash32 {
    let mut preimage = [0u8; 64];
    preimage[..32].copy_from_slice(commit_block_hash.as_bytes());
    preimage[32..].copy_from_slice(commitment.as_bytes());
    HashKind::QuorumSeed.hash(&preimage)
}

/// The seed from which `evaluator` generates its synthetic data: `H_seed(quorum_seed ‖ key)`.
/// Unique per evaluator, so evaluators cannot copy each other's measurements.
pub fn data_seed(quorum_seed: &Hash32, evaluator: &AccountId) -> Hash32 {
    let mut preimage = [0u8; 64];
    preimage[..32].copy_from_slice(quorum_seed.as_bytes());
    preimage[32..].copy_from_slice(&evaluator.0);
    HashKind::DataSeed.hash(&preimage)
}

// === quorum selection ===

/// An account that may be drawn into a quorum, with its reputation (the draw weight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuorumCandidate {
    pub account: AccountId,
    pub reputation: u64,
}

/// Draws `min(k, eligible)` distinct evaluators from `candidates`, weighted by reputation,
/// without replacement, deterministically from `seed`. Returned in draw order.
///
/// Eligible: reputation above zero, and not the optimizer unless `allow_optimizer` (solo
/// development mode). The caller filters out accounts below the chain's minimum reputation
/// first. The candidate list is sorted by account before drawing, so its order does not
/// matter; an account listed twice counts once, with the lower of its listed reputations
/// (a duplicate is a caller error, and the lower weight never inflates anyone's chances).
///
/// Draw `i` takes `r = u128(H_quorum(seed ‖ i as u32)) mod remaining_weight` and picks the
/// candidate whose cumulative-weight interval contains `r`.
pub fn select_quorum(
    seed: &Hash32,
    candidates: &[QuorumCandidate],
    optimizer: &AccountId,
    k: usize,
    allow_optimizer: bool,
) -> Vec<AccountId> {
    let mut pool = eligible_candidates(candidates, optimizer, allow_optimizer);
    let draws = k.min(pool.len());
    let mut remaining: u128 = pool.iter().map(|c| u128::from(c.reputation)).sum();
    let mut drawn = Vec::with_capacity(draws);
    for i in 0..draws {
        let Ok(index) = u32::try_from(i) else { break };
        if remaining == 0 {
            break;
        }
        let point = draw_point(seed, index) % remaining;
        let picked = pool.remove(position_of(&pool, point));
        remaining -= u128::from(picked.reputation);
        drawn.push(picked.account);
    }
    drawn
}

/// Candidates that may be drawn, sorted by account and deduplicated.
fn eligible_candidates(
    candidates: &[QuorumCandidate],
    optimizer: &AccountId,
    allow_optimizer: bool,
) -> Vec<QuorumCandidate> {
    let mut pool: Vec<QuorumCandidate> = candidates
        .iter()
        .filter(|c| c.reputation > 0 && (allow_optimizer || c.account != *optimizer))
        .copied()
        .collect();
    pool.sort_by(|a, b| {
        a.account
            .cmp(&b.account)
            .then(a.reputation.cmp(&b.reputation))
    });
    pool.dedup_by_key(|c| c.account);
    pool
}

/// The `index`-th pseudo-random point of a draw: the first 16 bytes of
/// `H_quorum(seed ‖ index)` as a little-endian `u128`.
fn draw_point(seed: &Hash32, index: u32) -> u128 {
    let mut preimage = [0u8; 36];
    preimage[..32].copy_from_slice(seed.as_bytes());
    preimage[32..].copy_from_slice(&index.to_le_bytes());
    let digest = HashKind::QuorumSeed.hash(&preimage);
    let mut low = [0u8; 16];
    low.copy_from_slice(&digest.0[..16]);
    u128::from_le_bytes(low)
}

/// Index of the candidate whose cumulative-weight interval `[before, before + weight)`
/// contains `point`. `point` is below the total weight, so the walk always ends inside the
/// pool; the last index is a defensive fallback.
fn position_of(pool: &[QuorumCandidate], point: u128) -> usize {
    let mut cumulative: u128 = 0;
    for (i, candidate) in pool.iter().enumerate() {
        cumulative += u128::from(candidate.reputation);
        if point < cumulative {
            return i;
        }
    }
    pool.len().saturating_sub(1)
}

// === verdict ===

/// The domain rules a verdict applies (a projection of [`DomainParams`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VerdictRules {
    /// K: the size of the quorum. Use the size actually drawn when fewer evaluators were
    /// eligible than the domain's K ([`VerdictRules::for_drawn_quorum`]).
    pub quorum_size: u32,
    /// A measurement agrees with the claim when `|m − claim| ≤ abs + rel·|claim|`.
    pub tolerance_abs: f64,
    pub tolerance_rel: f64,
    /// ε: the least improvement over the champion that counts.
    pub min_improvement: f64,
}

impl From<&DomainParams> for VerdictRules {
    fn from(d: &DomainParams) -> Self {
        VerdictRules {
            quorum_size: d.quorum_size,
            tolerance_abs: d.tolerance_abs,
            tolerance_rel: d.tolerance_rel,
            min_improvement: d.min_improvement,
        }
    }
}

impl VerdictRules {
    /// The same rules for a quorum of `drawn` evaluators, when [`select_quorum`] found fewer
    /// eligible evaluators than the domain's K (never raises K).
    pub fn for_drawn_quorum(self, drawn: usize) -> Self {
        let drawn = u32::try_from(drawn).unwrap_or(u32::MAX);
        VerdictRules {
            quorum_size: self.quorum_size.min(drawn),
            ..self
        }
    }
}

/// Votes needed out of a quorum of `k`: ⌈2k/3⌉.
pub fn votes_needed(k: u32) -> usize {
    let needed = (2 * u64::from(k)).div_ceil(3);
    usize::try_from(needed).unwrap_or(usize::MAX)
}

/// Whether a measurement reproduces a claim: `|measured − claim| ≤ abs + rel·|claim|`.
/// The tolerance is absolute plus relative so that claims near zero are handled.
/// Anything non-finite never agrees.
pub fn agrees(rules: &VerdictRules, claim: f64, measured: f64) -> bool {
    if !claim.is_finite() || !measured.is_finite() {
        return false;
    }
    let difference = (measured - claim).abs();
    let allowed = rules.tolerance_abs + rules.tolerance_rel * claim.abs();
    difference.is_finite() && difference <= allowed
}

/// One evaluator's measurement, already checked (signature, quorum membership, deadline).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CastVote {
    pub evaluator: AccountId,
    pub measured: f64,
}

/// Why a verdict rejected an optimae.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum RejectReason {
    /// Fewer than the needed votes agree with the claim.
    ClaimNotReproduced,
    /// The claim was reproduced but does not beat the champion by ε (e.g. a copy of it).
    NoImprovement,
}

/// The outcome of an optimae.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Verdict {
    /// Verified improvement: `credit = median − champion`.
    Accepted {
        median: f64,
        credit: f64,
    },
    Rejected {
        reason: RejectReason,
        median: f64,
    },
    /// Not enough (finite, distinct) votes to decide.
    NoQuorum {
        votes: usize,
        needed: usize,
    },
}

impl Verdict {
    pub fn is_accepted(&self) -> bool {
        matches!(self, Verdict::Accepted { .. })
    }

    /// The verified improvement, when accepted.
    pub fn credit(&self) -> Option<f64> {
        match self {
            Verdict::Accepted { credit, .. } => Some(*credit),
            _ => None,
        }
    }
}

/// A verdict and the evaluators whose votes matched it (they earn the evaluator share and
/// reputation; the quorum's other members lose reputation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerdictOutcome {
    pub verdict: Verdict,
    /// Sorted by account, no duplicates.
    pub matched: Vec<AccountId>,
    /// Whether at least ⌈2K/3⌉ counted votes agreed with the claim.
    pub corroborated: bool,
}

/// The verdict on an optimae claiming `claim`, against the current `champion` performance.
///
/// `votes` must be from the drawn quorum, signed and in time. Votes with a non-finite
/// measurement are ignored; an evaluator that voted twice counts once, with its lowest
/// measurement (so the slice order never matters). Then:
///
/// 1. fewer than ⌈2K/3⌉ (at least one) counted votes: `NoQuorum`, every counted voter matched;
/// 2. fewer than ⌈2K/3⌉ agree with the claim: `Rejected(ClaimNotReproduced)`, the voters that
///    disagreed matched;
/// 3. the median of all counted measurements is below `champion + ε` (or does not exceed the
///    champion at all): `Rejected(NoImprovement)`, the agreeing voters matched;
/// 4. otherwise `Accepted { median, credit: median − champion }`, the agreeing voters matched.
pub fn decide(
    rules: &VerdictRules,
    claim: f64,
    champion: f64,
    votes: &[CastVote],
) -> VerdictOutcome {
    let counted = counted_votes(votes);
    let needed = votes_needed(rules.quorum_size).max(1);
    let voters = |list: &[CastVote]| list.iter().map(|v| v.evaluator).collect::<Vec<_>>();
    let median = median_of(&counted);
    let Some(median) = median.filter(|_| counted.len() >= needed) else {
        return VerdictOutcome {
            verdict: Verdict::NoQuorum {
                votes: counted.len(),
                needed,
            },
            matched: voters(&counted),
            corroborated: false,
        };
    };
    let (agreeing, disagreeing): (Vec<CastVote>, Vec<CastVote>) = counted
        .iter()
        .partition(|v| agrees(rules, claim, v.measured));
    let corroborated = agreeing.len() >= needed;
    let (verdict, matched) = if !corroborated {
        let reason = RejectReason::ClaimNotReproduced;
        (Verdict::Rejected { reason, median }, voters(&disagreeing))
    } else if let Some(credit) = verified_improvement(rules, median, champion) {
        (Verdict::Accepted { median, credit }, voters(&agreeing))
    } else {
        let reason = RejectReason::NoImprovement;
        (Verdict::Rejected { reason, median }, voters(&agreeing))
    };
    VerdictOutcome {
        verdict,
        matched,
        corroborated,
    }
}

/// Finite votes, one per evaluator (its lowest measurement), sorted by evaluator.
fn counted_votes(votes: &[CastVote]) -> Vec<CastVote> {
    let mut counted: Vec<CastVote> = votes
        .iter()
        .filter(|v| v.measured.is_finite())
        .copied()
        .collect();
    counted.sort_by(|a, b| {
        a.evaluator
            .cmp(&b.evaluator)
            .then(a.measured.total_cmp(&b.measured))
    });
    counted.dedup_by_key(|v| v.evaluator);
    counted
}

/// Median of the measurements; the mean of the two middle values for an even count,
/// computed as `a/2 + b/2` so that it cannot overflow.
fn median_of(votes: &[CastVote]) -> Option<f64> {
    let mut values: Vec<f64> = votes.iter().map(|v| v.measured).collect();
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    match values.len() {
        0 => None,
        n if n % 2 == 1 => values.get(mid).copied(),
        _ => Some(values.get(mid - 1)? / 2.0 + values.get(mid)? / 2.0),
    }
}

/// `median − champion` when it is a real improvement: finite, positive, and with
/// `median ≥ champion + ε`. Written so that any NaN makes it `None`.
fn verified_improvement(rules: &VerdictRules, median: f64, champion: f64) -> Option<f64> {
    let credit = median - champion;
    let beats_threshold = median >= champion + rules.min_improvement;
    (credit.is_finite() && credit > 0.0 && beats_threshold).then_some(credit)
}

/// Work units for a verified improvement: `floor(credit × work_per_unit)`, saturating;
/// zero for a non-finite or non-positive credit.
pub fn credit_units(credit: f64, work_per_unit: u64) -> u64 {
    if !credit.is_finite() || credit <= 0.0 {
        return 0;
    }
    // `as` from f64 saturates (and floors positive values), which is exactly what we want;
    // IEEE-754 multiplication is the same on every platform.
    (credit * work_per_unit as f64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn account(n: u8) -> AccountId {
        AccountId([n; 32])
    }

    fn candidate(n: u8, reputation: u64) -> QuorumCandidate {
        QuorumCandidate {
            account: account(n),
            reputation,
        }
    }

    fn vote(n: u8, measured: f64) -> CastVote {
        CastVote {
            evaluator: account(n),
            measured,
        }
    }

    fn rules(k: u32) -> VerdictRules {
        VerdictRules {
            quorum_size: k,
            tolerance_abs: 0.5,
            tolerance_rel: 0.05,
            min_improvement: 1e-3,
        }
    }

    fn seed(n: u64) -> Hash32 {
        HashKind::QuorumSeed.hash(&n.to_le_bytes())
    }

    // --- commitment and seeds ---

    #[test]
    fn commitment_binds_every_field() {
        let domain = DomainId::new("quadratic").unwrap();
        let other_domain = DomainId::new("quadratic2").unwrap();
        let params = HashKind::Params.hash(b"weights");
        let salt = [7u8; 32];
        let base = commitment(&domain, &account(1), &params, -12.5, &salt);
        assert_eq!(
            base,
            commitment(&domain, &account(1), &params, -12.5, &salt)
        );
        let variants = [
            commitment(&other_domain, &account(1), &params, -12.5, &salt),
            commitment(&domain, &account(2), &params, -12.5, &salt),
            commitment(&domain, &account(1), &Hash32::ZERO, -12.5, &salt),
            commitment(&domain, &account(1), &params, -12.4, &salt),
            commitment(&domain, &account(1), &params, -12.5, &[8u8; 32]),
        ];
        for v in variants {
            assert_ne!(v, base);
        }
    }

    #[test]
    fn commitment_matches_its_documented_preimage() {
        let domain = DomainId::new("d").unwrap();
        let mut preimage = vec![1, 0, 0, 0, b'd'];
        preimage.extend_from_slice(&[1u8; 32]);
        preimage.extend_from_slice(&[2u8; 32]);
        preimage.extend_from_slice(&1.5f64.to_bits().to_le_bytes());
        preimage.extend_from_slice(&[3u8; 32]);
        assert_eq!(
            commitment(&domain, &account(1), &Hash32([2; 32]), 1.5, &[3; 32]),
            HashKind::Commit.hash(&preimage)
        );
    }

    #[test]
    fn seeds_depend_on_every_input_and_are_kind_separated() {
        let block = Hash32([1; 32]);
        let commit = Hash32([2; 32]);
        let q = quorum_seed(&block, &commit);
        assert_ne!(q, quorum_seed(&Hash32([9; 32]), &commit));
        assert_ne!(q, quorum_seed(&block, &Hash32([9; 32])));
        assert_ne!(q, quorum_seed(&commit, &block));
        assert_ne!(data_seed(&q, &account(1)), data_seed(&q, &account(2)));
        assert_ne!(data_seed(&q, &account(1)), data_seed(&seed(5), &account(1)));
        // Same preimage bytes, different kinds.
        assert_ne!(
            quorum_seed(&block, &commit),
            data_seed(&block, &AccountId(commit.0))
        );
    }

    // --- quorum selection ---

    #[test]
    fn quorum_excludes_the_optimizer_and_zero_reputation() {
        let candidates = [candidate(1, 10), candidate(2, 0), candidate(3, 5)];
        for n in 0..50 {
            let q = select_quorum(&seed(n), &candidates, &account(1), 3, false);
            assert_eq!(q, vec![account(3)]);
        }
    }

    #[test]
    fn solo_mode_may_draw_the_optimizer() {
        let candidates = [candidate(1, 10)];
        let q = select_quorum(&seed(0), &candidates, &account(1), 3, true);
        assert_eq!(q, vec![account(1)]);
        assert!(select_quorum(&seed(0), &candidates, &account(1), 3, false).is_empty());
    }

    #[test]
    fn quorum_of_nothing_is_empty() {
        assert!(select_quorum(&seed(0), &[], &account(1), 5, false).is_empty());
        assert!(select_quorum(&seed(0), &[candidate(2, 1)], &account(1), 0, false).is_empty());
    }

    #[test]
    fn duplicate_candidates_count_once_with_the_lower_reputation() {
        let a = [candidate(2, 1), candidate(2, 1_000_000), candidate(3, 1)];
        let b = [candidate(2, 1), candidate(3, 1)];
        for n in 0..50 {
            let qa = select_quorum(&seed(n), &a, &account(1), 2, false);
            assert_eq!(qa, select_quorum(&seed(n), &b, &account(1), 2, false));
            assert_eq!(qa.len(), 2);
        }
    }

    #[test]
    fn huge_reputations_do_not_overflow() {
        let candidates = [
            candidate(2, u64::MAX),
            candidate(3, u64::MAX),
            candidate(4, 1),
        ];
        let q = select_quorum(&seed(1), &candidates, &account(1), 3, false);
        assert_eq!(q.len(), 3);
    }

    /// Over a fixed list of seeds (so the test cannot flake), draw frequencies follow weights.
    #[test]
    fn heavier_candidates_are_drawn_more_often() {
        let candidates = [candidate(2, 1), candidate(3, 3), candidate(4, 6)];
        let mut first = [0u32; 3];
        let trials = 4_000u64;
        for n in 0..trials {
            let q = select_quorum(&seed(n), &candidates, &account(1), 1, false);
            first[usize::from(q[0].0[0] - 2)] += 1;
        }
        // Expected shares 10%, 30%, 60%; a generous band around each.
        let share = |c: u32| f64::from(c) / trials as f64;
        assert!((0.07..0.13).contains(&share(first[0])), "{first:?}");
        assert!((0.26..0.34).contains(&share(first[1])), "{first:?}");
        assert!((0.56..0.64).contains(&share(first[2])), "{first:?}");
    }

    #[test]
    fn second_draw_is_weighted_among_the_remaining() {
        // With one giant and two equal small candidates, the giant is almost always first and
        // the two small ones split the second draw evenly.
        let candidates = [candidate(2, 1_000_000), candidate(3, 1), candidate(4, 1)];
        let mut second = [0u32; 2];
        for n in 0..2_000 {
            let q = select_quorum(&seed(n), &candidates, &account(1), 2, false);
            assert_eq!(q[0], account(2));
            second[usize::from(q[1].0[0] - 3)] += 1;
        }
        assert!(
            second.iter().all(|&c| (850..1150).contains(&c)),
            "{second:?}"
        );
    }

    fn arb_candidates() -> impl Strategy<Value = Vec<QuorumCandidate>> {
        prop::collection::vec((0u8..40, 0u64..1_000), 0..30).prop_map(|v| {
            v.into_iter()
                .map(|(n, reputation)| candidate(n, reputation))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn quorum_is_deterministic_and_order_independent(
            (candidates, shuffled) in arb_candidates()
                .prop_flat_map(|c| (Just(c.clone()), Just(c).prop_shuffle())),
            seed_bytes in any::<[u8; 32]>(),
            k in 0usize..12,
            optimizer in 0u8..40,
            allow in any::<bool>(),
        ) {
            let seed = Hash32(seed_bytes);
            let opt = account(optimizer);
            let a = select_quorum(&seed, &candidates, &opt, k, allow);
            prop_assert_eq!(&a, &select_quorum(&seed, &candidates, &opt, k, allow));
            prop_assert_eq!(&a, &select_quorum(&seed, &shuffled, &opt, k, allow));
        }

        #[test]
        fn quorum_has_the_promised_members(
            candidates in arb_candidates(),
            seed_bytes in any::<[u8; 32]>(),
            k in 0usize..12,
            optimizer in 0u8..40,
            allow in any::<bool>(),
        ) {
            let opt = account(optimizer);
            let q = select_quorum(&Hash32(seed_bytes), &candidates, &opt, k, allow);
            let eligible: std::collections::BTreeSet<AccountId> = candidates
                .iter()
                .filter(|c| c.reputation > 0 && (allow || c.account != opt))
                .map(|c| c.account)
                .collect();
            prop_assert_eq!(q.len(), k.min(eligible.len()));
            let distinct: std::collections::BTreeSet<_> = q.iter().copied().collect();
            prop_assert_eq!(distinct.len(), q.len());
            prop_assert!(q.iter().all(|a| eligible.contains(a)));
            if !allow {
                prop_assert!(!q.contains(&opt));
            }
        }
    }

    // --- verdict ---

    #[test]
    fn votes_needed_is_two_thirds_rounded_up() {
        let expected = [
            (0, 0),
            (1, 1),
            (2, 2),
            (3, 2),
            (4, 3),
            (5, 4),
            (6, 4),
            (7, 5),
        ];
        for (k, needed) in expected {
            assert_eq!(votes_needed(k), needed, "k = {k}");
        }
        assert_eq!(votes_needed(u32::MAX), 2_863_311_530);
    }

    #[test]
    fn agreement_is_absolute_plus_relative() {
        let r = rules(3);
        assert!(agrees(&r, 0.0, 0.5));
        assert!(!agrees(&r, 0.0, 0.51));
        assert!(agrees(&r, -100.0, -105.5)); // 0.5 + 0.05·100 = 5.5
        assert!(!agrees(&r, -100.0, -105.6));
        assert!(!agrees(&r, f64::NAN, 0.0));
        assert!(!agrees(&r, 0.0, f64::INFINITY));
        assert!(!agrees(&r, f64::MAX, -f64::MAX));
    }

    #[test]
    fn honest_improvement_is_accepted_with_verified_credit() {
        let votes = [vote(1, -9.8), vote(2, -10.1), vote(3, -10.0)];
        let out = decide(&rules(3), -10.0, -20.0, &votes);
        assert_eq!(
            out.verdict,
            Verdict::Accepted {
                median: -10.0,
                credit: 10.0
            }
        );
        assert!(out.corroborated);
        assert_eq!(out.matched, vec![account(1), account(2), account(3)]);
    }

    #[test]
    fn credit_is_the_measured_improvement_not_the_claim() {
        // Claimed −10 but evaluators measure about −10.4: credit uses the median.
        let votes = [vote(1, -10.4), vote(2, -10.3), vote(3, -10.5)];
        let out = decide(&rules(3), -10.0, -20.0, &votes);
        assert_eq!(out.verdict.credit(), Some(-10.4 - -20.0));
    }

    #[test]
    fn inflated_claim_is_rejected_and_dissenters_matched() {
        let votes = [vote(1, -50.0), vote(2, -49.0), vote(3, -51.0)];
        let out = decide(&rules(3), -10.0, -60.0, &votes);
        assert_eq!(
            out.verdict,
            Verdict::Rejected {
                reason: RejectReason::ClaimNotReproduced,
                median: -50.0
            }
        );
        assert!(!out.corroborated);
        assert_eq!(out.matched, vec![account(1), account(2), account(3)]);
    }

    #[test]
    fn copying_the_champion_is_rejected() {
        let votes = [vote(1, -20.0), vote(2, -20.0), vote(3, -20.0)];
        let out = decide(&rules(3), -20.0, -20.0, &votes);
        assert_eq!(
            out.verdict,
            Verdict::Rejected {
                reason: RejectReason::NoImprovement,
                median: -20.0
            }
        );
        assert!(out.corroborated);
        assert_eq!(out.matched.len(), 3);
        // Even with ε = 0 a copy earns nothing.
        let zero_eps = VerdictRules {
            min_improvement: 0.0,
            ..rules(3)
        };
        assert!(!decide(&zero_eps, -20.0, -20.0, &votes)
            .verdict
            .is_accepted());
    }

    #[test]
    fn improvement_below_epsilon_is_rejected() {
        let votes = [vote(1, -19.9995)];
        let out = decide(&rules(1), -19.9995, -20.0, &votes);
        assert!(matches!(
            out.verdict,
            Verdict::Rejected {
                reason: RejectReason::NoImprovement,
                ..
            }
        ));
    }

    #[test]
    fn too_few_votes_is_no_quorum() {
        let votes = [vote(2, -10.0), vote(1, -10.0)];
        let out = decide(&rules(4), -10.0, -20.0, &votes);
        assert_eq!(
            out.verdict,
            Verdict::NoQuorum {
                votes: 2,
                needed: 3
            }
        );
        assert_eq!(out.matched, vec![account(1), account(2)]);
        assert!(!out.corroborated);
        let none = decide(&rules(0), -10.0, -20.0, &[]);
        assert_eq!(
            none.verdict,
            Verdict::NoQuorum {
                votes: 0,
                needed: 1
            }
        );
    }

    #[test]
    fn duplicate_and_non_finite_votes_do_not_count() {
        let votes = [
            vote(1, -10.0),
            vote(1, -10.0),
            vote(1, -10.0),
            vote(2, f64::NAN),
            vote(3, f64::INFINITY),
        ];
        let out = decide(&rules(3), -10.0, -20.0, &votes);
        assert_eq!(
            out.verdict,
            Verdict::NoQuorum {
                votes: 1,
                needed: 2
            }
        );
        assert_eq!(out.matched, vec![account(1)]);
    }

    #[test]
    fn an_evaluators_duplicate_votes_resolve_to_its_lowest() {
        let a = [
            vote(1, -10.0),
            vote(1, -99.0),
            vote(2, -10.0),
            vote(3, -10.0),
        ];
        let b = [
            vote(3, -10.0),
            vote(2, -10.0),
            vote(1, -99.0),
            vote(1, -10.0),
        ];
        let out = decide(&rules(3), -10.0, -20.0, &a);
        assert_eq!(out, decide(&rules(3), -10.0, -20.0, &b));
        assert_eq!(out.matched, vec![account(2), account(3)]);
    }

    #[test]
    fn even_median_is_the_mean_of_the_middle_pair_without_overflow() {
        let votes = [vote(1, f64::MAX), vote(2, f64::MAX)];
        assert_eq!(median_of(&votes), Some(f64::MAX));
        let votes = [vote(1, 1.0), vote(2, 4.0), vote(3, 2.0), vote(4, 3.0)];
        assert_eq!(median_of(&votes), Some(2.5));
        assert_eq!(median_of(&[]), None);
    }

    #[test]
    fn nan_inputs_are_never_accepted() {
        let votes = [vote(1, -10.0), vote(2, -10.0), vote(3, -10.0)];
        assert!(!decide(&rules(3), f64::NAN, -20.0, &votes)
            .verdict
            .is_accepted());
        assert!(!decide(&rules(3), -10.0, f64::NAN, &votes)
            .verdict
            .is_accepted());
        assert!(!decide(&rules(3), -10.0, f64::NEG_INFINITY, &votes)
            .verdict
            .is_accepted());
        for r in [
            VerdictRules {
                tolerance_abs: f64::NAN,
                ..rules(3)
            },
            VerdictRules {
                tolerance_rel: f64::NAN,
                ..rules(3)
            },
            VerdictRules {
                min_improvement: f64::NAN,
                ..rules(3)
            },
        ] {
            assert!(
                !decide(&r, -10.0, -20.0, &votes).verdict.is_accepted(),
                "{r:?}"
            );
        }
    }

    #[test]
    fn rules_follow_the_domain_and_the_drawn_quorum() {
        let params = crate::params::ChainParams::dev("x");
        let d = &params.domains[0];
        let r = VerdictRules::from(d);
        assert_eq!(r.quorum_size, d.quorum_size);
        assert_eq!(r.tolerance_abs, d.tolerance_abs);
        assert_eq!(r.tolerance_rel, d.tolerance_rel);
        assert_eq!(r.min_improvement, d.min_improvement);
        assert_eq!(r.for_drawn_quorum(1).quorum_size, 1);
        assert_eq!(r.for_drawn_quorum(100).quorum_size, d.quorum_size);
    }

    #[test]
    fn credit_units_floor_and_saturate() {
        assert_eq!(credit_units(1.5, 1_000), 1_500);
        assert_eq!(credit_units(0.0019, 1_000), 1);
        assert_eq!(credit_units(0.0, 1_000), 0);
        assert_eq!(credit_units(-1.0, 1_000), 0);
        assert_eq!(credit_units(f64::NAN, 1_000), 0);
        assert_eq!(credit_units(f64::INFINITY, 1_000), 0);
        assert_eq!(credit_units(1e300, u64::MAX), u64::MAX);
        assert_eq!(credit_units(1.0, 0), 0);
    }

    fn arb_measure() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => -100.0f64..100.0,
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => prop::num::f64::ANY,
        ]
    }

    fn arb_votes() -> impl Strategy<Value = Vec<CastVote>> {
        prop::collection::vec((0u8..12, arb_measure()), 0..16)
            .prop_map(|v| v.into_iter().map(|(n, m)| vote(n, m)).collect())
    }

    proptest! {
        #[test]
        fn verdict_is_independent_of_vote_order(
            (votes, shuffled) in arb_votes().prop_flat_map(|v| (Just(v.clone()), Just(v).prop_shuffle())),
            k in 1u32..10,
            claim in -100.0f64..100.0,
            champion in -100.0f64..100.0,
        ) {
            let a = decide(&rules(k), claim, champion, &votes);
            let b = decide(&rules(k), claim, champion, &shuffled);
            prop_assert_eq!(a, b);
        }

        /// Fewer than a third of K colluders, voting anything at all, cannot turn an honest
        /// acceptance into a rejection, nor move the credit outside the honest measurements.
        #[test]
        fn colluding_minority_cannot_block_an_honest_acceptance(
            k in 1u32..20,
            noise in prop::collection::vec(-0.4f64..0.4, 20),
            lies in prop::collection::vec(prop::num::f64::ANY, 20),
        ) {
            let colluders = (k as usize - 1) / 3; // strictly less than k/3
            let honest = k as usize - colluders;
            let claim = -10.0;
            let champion = -20.0;
            let mut votes: Vec<CastVote> =
                (0..honest).map(|i| vote(i as u8, claim + noise[i])).collect();
            votes.extend((0..colluders).map(|i| vote(100 + i as u8, lies[i])));
            let out = decide(&rules(k), claim, champion, &votes);
            let credit = out.verdict.credit();
            prop_assert!(credit.is_some(), "{:?}", out);
            let credit = credit.unwrap_or_default();
            prop_assert!((10.0 - 0.4..=10.0 + 0.4).contains(&credit), "{}", credit);
        }

        /// Fewer than a third of K colluders, all confirming an inflated claim, cannot get it
        /// accepted when the honest majority measures something else.
        #[test]
        fn colluding_minority_cannot_push_a_false_claim(
            k in 1u32..20,
            noise in prop::collection::vec(-0.4f64..0.4, 20),
            inflation in 10.0f64..1e6,
        ) {
            let colluders = (k as usize - 1) / 3;
            let honest = k as usize - colluders;
            let truth = -50.0;
            let claim = truth + inflation;
            let mut votes: Vec<CastVote> =
                (0..honest).map(|i| vote(i as u8, truth + noise[i])).collect();
            votes.extend((0..colluders).map(|i| vote(100 + i as u8, claim)));
            let out = decide(&rules(k), claim, -60.0, &votes);
            prop_assert!(
                matches!(out.verdict, Verdict::Rejected { reason: RejectReason::ClaimNotReproduced, .. }),
                "{:?}", out
            );
        }

        #[test]
        fn a_copy_of_the_champion_is_never_accepted(
            k in 1u32..10,
            champion in -1e6f64..1e6,
            eps in 0.0f64..1.0,
        ) {
            let r = VerdictRules { min_improvement: eps, ..rules(k) };
            let votes: Vec<CastVote> = (0..k as u8).map(|i| vote(i, champion)).collect();
            prop_assert!(!decide(&r, champion, champion, &votes).verdict.is_accepted());
        }

        #[test]
        fn accepted_verdicts_are_finite_and_beat_the_champion(
            votes in arb_votes(),
            k in 1u32..10,
            claim in arb_measure(),
            champion in arb_measure(),
            eps in arb_measure(),
        ) {
            let r = VerdictRules { min_improvement: eps, ..rules(k) };
            let out = decide(&r, claim, champion, &votes);
            if let Verdict::Accepted { median, credit } = out.verdict {
                prop_assert!(claim.is_finite() && champion.is_finite() && eps.is_finite());
                prop_assert!(median.is_finite() && credit.is_finite() && credit > 0.0);
                prop_assert!(median >= champion + eps);
                prop_assert!(out.corroborated);
            }
            let mut sorted = out.matched.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(sorted, out.matched);
        }
    }
}
