//! Signed trial reports: the trainings an island's optimizer ran, gossiped so that every
//! island's surrogate model learns from every participant's trials.
//!
//! Reports are not consensus data; they are signed so a receiver knows who reported them and
//! can blame a liar: it may retrain a trial with the reported seed and compare. As with
//! transactions, the id is the domain-separated hash of the versioned canonical encoding
//! (signature excluded), the signature is over the id, and the report names the chain so it
//! cannot be replayed on another network. Hyperparameters are encoded in name order and
//! decoding refuses any other order, so one report has exactly one encoding (and one id).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::encode::{encode_versioned, put, Decode, DecodeError, Encode, Reader};
use crate::hash::{Hash32, HashKind};
use crate::identity::{AccountId, Keypair, Signature, SignatureError};
use crate::params::DomainId;
use crate::tx::MAX_CHAIN_ID;

/// Most trials in one report (keeps a report far below the gossip size limit).
pub const MAX_TRIALS_PER_REPORT: usize = 8;
/// Most hyperparameters of one trial.
pub const MAX_TRIAL_HYPERPARAMETERS: usize = 32;
/// Longest hyperparameter name, in bytes.
pub const MAX_HYPERPARAMETER_NAME: usize = 48;

/// One training of a reporter's optimizer: the candidate, the training seed (so a receiver
/// can reproduce it) and the performance it reached (higher is better).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Trial {
    pub hyperparameters: BTreeMap<String, f64>,
    pub seed: u64,
    pub performance: f64,
}

/// The signed part of a trial report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TrialReport {
    pub chain_id: String,
    pub domain: DomainId,
    pub reporter: AccountId,
    /// The reporter's own counter, so receivers can order its reports and drop repeats.
    pub sequence: u64,
    pub trials: Vec<Trial>,
}

/// A trial report with its reporter's signature over its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SignedTrialReport {
    pub report: TrialReport,
    pub signature: Signature,
}

/// Why a receiver refuses a trial report.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum TrialError {
    #[error("chain_id: trial report is for chain {got:?}, this is {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("{field}: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
}

fn field(field: &'static str, reason: impl Into<String>) -> TrialError {
    TrialError::Field {
        field,
        reason: reason.into(),
    }
}

impl TrialReport {
    /// The id: hash of the versioned canonical encoding.
    pub fn id(&self) -> Hash32 {
        HashKind::Trials.hash(&encode_versioned(self))
    }

    pub fn sign(self, key: &Keypair) -> SignedTrialReport {
        debug_assert_eq!(
            self.reporter,
            key.account(),
            "signing another account's trial report"
        );
        let signature = key.sign(self.id().as_bytes());
        SignedTrialReport {
            report: self,
            signature,
        }
    }

    /// Field sanity: bounded counts and names, finite numbers (a surrogate cannot learn from
    /// NaN, and a bounded report cannot exhaust a receiver).
    pub fn check_fields(&self) -> Result<(), TrialError> {
        if self.trials.is_empty() || self.trials.len() > MAX_TRIALS_PER_REPORT {
            return Err(field(
                "trials",
                format!(
                    "{} trials; must be 1-{MAX_TRIALS_PER_REPORT}",
                    self.trials.len()
                ),
            ));
        }
        for trial in &self.trials {
            let n = trial.hyperparameters.len();
            if n == 0 || n > MAX_TRIAL_HYPERPARAMETERS {
                return Err(field(
                    "trials.hyperparameters",
                    format!("{n} hyperparameters; must be 1-{MAX_TRIAL_HYPERPARAMETERS}"),
                ));
            }
            for (name, value) in &trial.hyperparameters {
                if name.is_empty() || name.len() > MAX_HYPERPARAMETER_NAME {
                    return Err(field(
                        "trials.hyperparameters.name",
                        format!("must be 1-{MAX_HYPERPARAMETER_NAME} bytes"),
                    ));
                }
                if !value.is_finite() {
                    return Err(field(
                        "trials.hyperparameters.value",
                        format!("{name} is not finite"),
                    ));
                }
            }
            if !trial.performance.is_finite() {
                return Err(field("trials.performance", "must be a finite number"));
            }
        }
        Ok(())
    }
}

impl SignedTrialReport {
    pub fn id(&self) -> Hash32 {
        self.report.id()
    }

    /// Every check a receiver makes: chain, field sanity, then the reporter's signature over
    /// the id. Returns the id so callers need not hash twice.
    pub fn verify(&self, chain_id: &str) -> Result<Hash32, TrialError> {
        if self.report.chain_id != chain_id {
            return Err(TrialError::WrongChain {
                expected: chain_id.to_owned(),
                got: self.report.chain_id.clone(),
            });
        }
        self.report.check_fields()?;
        let id = self.report.id();
        self.report
            .reporter
            .verify(id.as_bytes(), &self.signature)?;
        Ok(id)
    }
}

// ---- canonical encoding -------------------------------------------------------------------

impl Encode for Trial {
    fn encode(&self, out: &mut Vec<u8>) {
        // BTreeMap iterates in name order: the canonical order decoding insists on.
        put::len(out, self.hyperparameters.len());
        for (name, value) in &self.hyperparameters {
            put::string(out, name);
            put::f64(out, *value);
        }
        put::u64(out, self.seed);
        put::f64(out, self.performance);
    }
}

impl Decode for Trial {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = r.len("trials.hyperparameters", MAX_TRIAL_HYPERPARAMETERS)?;
        let mut hyperparameters = BTreeMap::new();
        for _ in 0..len {
            let name = r.string("trials.hyperparameters.name", MAX_HYPERPARAMETER_NAME)?;
            let value = r.f64("trials.hyperparameters.value")?;
            if let Some((last, _)) = hyperparameters.last_key_value() {
                if name <= *last {
                    return Err(DecodeError::Invalid {
                        field: "trials.hyperparameters.name",
                        reason: format!(
                            "{name:?} is not after {last:?} (names must be sorted and unique)"
                        ),
                    });
                }
            }
            hyperparameters.insert(name, value);
        }
        Ok(Trial {
            hyperparameters,
            seed: r.u64("trials.seed")?,
            performance: r.f64("trials.performance")?,
        })
    }
}

impl Encode for TrialReport {
    fn encode(&self, out: &mut Vec<u8>) {
        put::string(out, &self.chain_id);
        self.domain.encode(out);
        self.reporter.encode(out);
        put::u64(out, self.sequence);
        put::len(out, self.trials.len());
        for trial in &self.trials {
            trial.encode(out);
        }
    }
}

impl Decode for TrialReport {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(TrialReport {
            chain_id: r.string("chain_id", MAX_CHAIN_ID)?,
            domain: DomainId::decode(r)?,
            reporter: AccountId::decode(r)?,
            sequence: r.u64("sequence")?,
            trials: r.vec("trials", MAX_TRIALS_PER_REPORT, Trial::decode)?,
        })
    }
}

impl Encode for SignedTrialReport {
    fn encode(&self, out: &mut Vec<u8>) {
        self.report.encode(out);
        self.signature.encode(out);
    }
}

impl Decode for SignedTrialReport {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(SignedTrialReport {
            report: TrialReport::decode(r)?,
            signature: Signature::decode(r)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::decode_versioned;

    const CHAIN: &str = "dev";

    fn key() -> Keypair {
        Keypair::from_seed([3; 32])
    }

    fn trial(lr: f64, performance: f64) -> Trial {
        Trial {
            hyperparameters: BTreeMap::from([
                ("learning_rate".to_owned(), lr),
                ("hidden".to_owned(), 64.0),
            ]),
            seed: 42,
            performance,
        }
    }

    fn report(trials: Vec<Trial>) -> TrialReport {
        TrialReport {
            chain_id: CHAIN.into(),
            domain: DomainId::new("quadratic").unwrap(),
            reporter: key().account(),
            sequence: 7,
            trials,
        }
    }

    fn signed(trials: Vec<Trial>) -> SignedTrialReport {
        report(trials).sign(&key())
    }

    fn field_of(err: TrialError) -> &'static str {
        match err {
            TrialError::Field { field, .. } => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn round_trips_through_the_canonical_encoding() {
        let s = signed(vec![trial(0.01, -1.5), trial(0.1, -0.5)]);
        let bytes = encode_versioned(&s);
        let back: SignedTrialReport = decode_versioned(&bytes).unwrap();
        assert_eq!(back, s);
        assert_eq!(back.id(), s.id());
        assert_eq!(encode_versioned(&back), bytes);
    }

    #[test]
    fn sign_then_verify() {
        let s = signed(vec![trial(0.01, -1.5)]);
        assert_eq!(s.verify(CHAIN), Ok(s.id()));
    }

    #[test]
    fn tampering_breaks_the_signature() {
        let mut s = signed(vec![trial(0.01, -1.5)]);
        s.report.trials[0].performance = 0.0;
        assert_eq!(
            s.verify(CHAIN),
            Err(TrialError::Signature(SignatureError::Invalid))
        );
        // Another account cannot claim the report either.
        let mut s = signed(vec![trial(0.01, -1.5)]);
        s.report.reporter = Keypair::from_seed([4; 32]).account();
        assert_eq!(
            s.verify(CHAIN),
            Err(TrialError::Signature(SignatureError::Invalid))
        );
    }

    #[test]
    fn wrong_chain_is_refused() {
        let s = signed(vec![trial(0.01, -1.5)]);
        assert_eq!(
            s.verify("main"),
            Err(TrialError::WrongChain {
                expected: "main".into(),
                got: CHAIN.into()
            })
        );
    }

    #[test]
    fn non_finite_numbers_are_refused() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let s = signed(vec![trial(0.01, bad)]);
            assert_eq!(field_of(s.verify(CHAIN).unwrap_err()), "trials.performance");
            let s = signed(vec![trial(bad, -1.0)]);
            assert_eq!(
                field_of(s.verify(CHAIN).unwrap_err()),
                "trials.hyperparameters.value"
            );
        }
    }

    #[test]
    fn trial_and_hyperparameter_counts_and_names_are_bounded() {
        assert_eq!(
            field_of(signed(vec![]).verify(CHAIN).unwrap_err()),
            "trials"
        );
        let many = vec![trial(0.01, -1.0); MAX_TRIALS_PER_REPORT + 1];
        assert_eq!(field_of(signed(many).verify(CHAIN).unwrap_err()), "trials");
        let full = vec![trial(0.01, -1.0); MAX_TRIALS_PER_REPORT];
        assert!(signed(full).verify(CHAIN).is_ok());

        let mut t = trial(0.01, -1.0);
        t.hyperparameters.clear();
        assert_eq!(
            field_of(signed(vec![t.clone()]).verify(CHAIN).unwrap_err()),
            "trials.hyperparameters"
        );
        t.hyperparameters = (0..=MAX_TRIAL_HYPERPARAMETERS)
            .map(|i| (format!("p{i:02}"), 1.0))
            .collect();
        assert_eq!(
            field_of(signed(vec![t.clone()]).verify(CHAIN).unwrap_err()),
            "trials.hyperparameters"
        );
        for name in [String::new(), "x".repeat(MAX_HYPERPARAMETER_NAME + 1)] {
            t.hyperparameters = BTreeMap::from([(name, 1.0)]);
            assert_eq!(
                field_of(signed(vec![t.clone()]).verify(CHAIN).unwrap_err()),
                "trials.hyperparameters.name"
            );
        }
    }

    #[test]
    fn oversize_input_is_a_decode_error() {
        // Too many trials, hyperparameters, name bytes or chain id bytes: each is refused
        // by its length prefix, never by a panic or a huge allocation.
        let cases = [
            signed(vec![trial(0.01, -1.0); MAX_TRIALS_PER_REPORT + 1]),
            signed(vec![Trial {
                hyperparameters: (0..=MAX_TRIAL_HYPERPARAMETERS)
                    .map(|i| (format!("p{i:02}"), 1.0))
                    .collect(),
                seed: 1,
                performance: 0.0,
            }]),
            signed(vec![Trial {
                hyperparameters: BTreeMap::from([("x".repeat(MAX_HYPERPARAMETER_NAME + 1), 1.0)]),
                seed: 1,
                performance: 0.0,
            }]),
            {
                let mut r = report(vec![trial(0.01, -1.0)]);
                r.chain_id = "c".repeat(MAX_CHAIN_ID + 1);
                r.sign(&key())
            },
        ];
        for s in cases {
            let err = decode_versioned::<SignedTrialReport>(&encode_versioned(&s)).unwrap_err();
            assert!(matches!(err, DecodeError::TooLong { .. }), "{err:?}");
        }
        // A lying length prefix with a short body, and arbitrary truncations.
        let bytes = encode_versioned(&signed(vec![trial(0.01, -1.0)]));
        for cut in 0..bytes.len() {
            assert!(decode_versioned::<SignedTrialReport>(&bytes[..cut]).is_err());
        }
    }

    /// A report with one trial, written by hand so the names can be in any order.
    fn hand_encoded(names: &[&str]) -> Vec<u8> {
        let mut out = vec![crate::encode::ENCODING_VERSION];
        put::string(&mut out, CHAIN);
        DomainId::new("quadratic").unwrap().encode(&mut out);
        key().account().encode(&mut out);
        put::u64(&mut out, 1);
        put::len(&mut out, 1);
        put::len(&mut out, names.len());
        for name in names {
            put::string(&mut out, name);
            put::f64(&mut out, 1.0);
        }
        put::u64(&mut out, 9);
        put::f64(&mut out, 0.5);
        Signature([0; 64]).encode(&mut out);
        out
    }

    #[test]
    fn unsorted_or_duplicate_names_are_a_decode_error() {
        let sorted = decode_versioned::<SignedTrialReport>(&hand_encoded(&["a", "b"])).unwrap();
        assert_eq!(sorted.report.trials[0].hyperparameters.len(), 2);
        for names in [["b", "a"], ["a", "a"]] {
            let err = decode_versioned::<SignedTrialReport>(&hand_encoded(&names)).unwrap_err();
            assert!(
                matches!(
                    err,
                    DecodeError::Invalid {
                        field: "trials.hyperparameters.name",
                        ..
                    }
                ),
                "{err:?}"
            );
        }
    }

    #[test]
    fn non_finite_values_do_not_decode() {
        let mut s = signed(vec![trial(0.01, -1.0)]);
        s.report.trials[0].performance = f64::NAN;
        assert!(decode_versioned::<SignedTrialReport>(&encode_versioned(&s)).is_err());
    }
}
