//! Other islands' trainings for the L3 surrogate: the analytics of all participants.
//!
//! Every island gossips its recent trainings (hyperparameters, training seed, performance on
//! the data that seed generates; [`doin_core::trials`]). An island that adds them to its
//! surrogate's records learns from N islands' work instead of its own alone, so with N nodes
//! the surrogate has its fill of records after about 1/N of the rounds.
//!
//! A report is not a verdict: nothing in it reaches the chain, and a candidate the surrogate
//! proposes from it is still trained here and verified by a quorum before it counts. A false
//! report can only waste this island's rounds. To bound that, the book:
//!
//! * **spot-checks**: one trial, drawn at random, of a reporter's first report and of each
//!   later report with probability `trial_spot_checks`, is retrained with its own seed (a lie
//!   in any trial of a report is caught with probability `trial_spot_checks` / its trials
//!   per report, and a reporter keeps lying at that risk every time); a trial that does
//!   not reproduce within [`SPOT_CHECK_TOLERANCE`] refutes the reporter: its records leave
//!   and its reports are refused from then on;
//! * **bounds what reports can take**: at most [`MAX_REPORTED_RECORDS`] reported records
//!   (half the surrogate's), the oldest leaving first, so reports never crowd out this
//!   island's own trainings; at most [`MAX_REPORTERS`] reporters are followed;
//! * **refuses replays**: a reporter's sequence numbers must increase.

use std::collections::{BTreeMap, VecDeque};

use doin_core::identity::AccountId;
use doin_core::trials::Trial;

use crate::rng::Rng;
use crate::surrogate::{Record, MAX_RECORDS};

/// Most records of other islands the surrogate keeps (the oldest leave first).
pub const MAX_REPORTED_RECORDS: usize = MAX_RECORDS / 2;
/// Reporters an island follows (sequence numbers and checks); others are refused.
pub const MAX_REPORTERS: usize = 1024;
/// A retrained trial reproduces its report when `|retrained − reported| ≤ tolerance ×
/// max(1, |reported|)`: loose enough for libtorch's thread-count rounding, tight enough that
/// a lie that passes would barely move a surrogate.
pub const SPOT_CHECK_TOLERANCE: f64 = 1e-4;
/// Default probability of spot-checking a report after a reporter's first.
pub const DEFAULT_TRIAL_SPOT_CHECKS: f64 = 0.1;

const TAG_SPOT: u64 = 0x6761_2d73_706f_7421; // "ga-spot!"

/// What became of a report.
#[derive(Debug, Clone, PartialEq)]
pub enum TrialsOutcome {
    /// Its trials joined the surrogate's records (`records` of them: trials naming none of
    /// the search space's genes are skipped); `checked` when one was retrained and
    /// reproduced.
    Adopted { records: usize, checked: bool },
    /// A retrained trial did not reproduce: the reporter's records were dropped and its
    /// reports are refused from now on.
    Refuted { reason: String },
    /// Not used, and not the reporter's fault to blame: a replayed or reordered sequence
    /// number, too many reporters, or an optimizer without a surrogate.
    Ignored { reason: String },
    /// The reporter was refuted before.
    Refused,
}

/// Per reporter: the last sequence number and whether a check has passed.
#[derive(Debug, Clone, Copy)]
struct Reporter {
    last_sequence: u64,
    checked: bool,
    refuted: bool,
}

/// The reported records and what is known of their reporters.
#[derive(Debug, Default)]
pub(crate) struct ReportBook {
    records: VecDeque<(AccountId, Record)>,
    reporters: BTreeMap<AccountId, Reporter>,
}

/// What to do with a report before its trials are added.
pub(crate) enum Admission {
    /// Check the trial at this index first (retrain it with its seed).
    Check(usize),
    /// Add without a check.
    Add,
    /// Do not use it.
    Skip(TrialsOutcome),
}

impl ReportBook {
    pub(crate) fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.iter().map(|(_, r)| r)
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Decides what to do with `reporter`'s report `sequence`. `seed` (the island's run seed)
    /// makes the spot-check draws reproducible, and unpredictable to a reporter that does not
    /// know it.
    pub(crate) fn admit(
        &mut self,
        reporter: &AccountId,
        sequence: u64,
        trials: &[Trial],
        seed: u64,
        spot_checks: f64,
    ) -> Admission {
        let known = self.reporters.get(reporter).copied();
        match known {
            Some(r) if r.refuted => return Admission::Skip(TrialsOutcome::Refused),
            Some(r) if sequence <= r.last_sequence => {
                return Admission::Skip(TrialsOutcome::Ignored {
                    reason: format!(
                        "sequence {sequence} is not after the reporter's last, {}",
                        r.last_sequence
                    ),
                })
            }
            None if self.reporters.len() >= MAX_REPORTERS => {
                return Admission::Skip(TrialsOutcome::Ignored {
                    reason: format!("already following {MAX_REPORTERS} reporters"),
                })
            }
            _ => {}
        }
        let entry = self.reporters.entry(*reporter).or_insert(Reporter {
            last_sequence: sequence,
            checked: false,
            refuted: false,
        });
        entry.last_sequence = sequence;
        if trials.is_empty() {
            return Admission::Add;
        }
        let mut key = [0u8; 8];
        key.copy_from_slice(&reporter.0[..8]);
        let mut rng = Rng::derive(TAG_SPOT, &[seed, u64::from_le_bytes(key), sequence]);
        // Any trial may be the one checked, so a lie anywhere in a report is at risk.
        let pick = rng.index(trials.len());
        if !entry.checked || rng.chance(spot_checks) {
            Admission::Check(pick)
        } else {
            Admission::Add
        }
    }

    /// A check of `reporter` reproduced.
    pub(crate) fn passed(&mut self, reporter: &AccountId) {
        if let Some(r) = self.reporters.get_mut(reporter) {
            r.checked = true;
        }
    }

    /// A check of `reporter` did not reproduce: its records leave, its reports are refused.
    pub(crate) fn refute(&mut self, reporter: &AccountId) {
        if let Some(r) = self.reporters.get_mut(reporter) {
            r.refuted = true;
        }
        self.records.retain(|(who, _)| who != reporter);
    }

    /// Adds `reporter`'s records, the oldest leaving beyond [`MAX_REPORTED_RECORDS`].
    pub(crate) fn add(&mut self, reporter: &AccountId, records: Vec<Record>) {
        for record in records {
            self.records.push_back((*reporter, record));
        }
        while self.records.len() > MAX_REPORTED_RECORDS {
            self.records.pop_front();
        }
    }
}

/// Whether `retrained` reproduces `reported` (see [`SPOT_CHECK_TOLERANCE`]).
pub(crate) fn reproduces(retrained: f64, reported: f64) -> bool {
    retrained.is_finite()
        && (retrained - reported).abs() <= SPOT_CHECK_TOLERANCE * reported.abs().max(1.0)
}
