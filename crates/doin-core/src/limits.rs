//! Per-domain resource limits and parameter bounds, enforced rather than declared.
//!
//! `max_params_bytes` is a consensus rule (a reveal declaring a larger blob is invalid);
//! the others are checked by optimizers before training and by evaluators before scoring,
//! through [`ResourceLimits::check_training`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::encode::{put, Encode};

/// What one candidate may consume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ResourceLimits {
    pub max_training_seconds: u64,
    pub max_memory_mb: u64,
    pub max_epochs: u64,
    pub max_batch_size: u64,
    /// Largest serialized parameter blob (model weights) a reveal may point to.
    pub max_params_bytes: u64,
}

impl Default for ResourceLimits {
    fn default() -> Self {
        Self {
            max_training_seconds: 3_600,
            max_memory_mb: 8_192,
            max_epochs: 5_000,
            max_batch_size: 512,
            max_params_bytes: 64 << 20,
        }
    }
}

/// A limit that was exceeded or makes no sense; `field` names it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {reason}")]
pub struct LimitError {
    pub field: String,
    pub reason: String,
}

fn err(field: &str, reason: String) -> LimitError {
    LimitError {
        field: field.to_string(),
        reason,
    }
}

/// What a candidate's training asks for (filled from its hyperparameters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrainingRequest {
    pub epochs: u64,
    pub batch_size: u64,
    pub params_bytes: u64,
}

impl ResourceLimits {
    pub fn validate(&self) -> Result<(), LimitError> {
        for (field, v) in [
            ("max_training_seconds", self.max_training_seconds),
            ("max_memory_mb", self.max_memory_mb),
            ("max_epochs", self.max_epochs),
            ("max_batch_size", self.max_batch_size),
            ("max_params_bytes", self.max_params_bytes),
        ] {
            if v == 0 {
                return Err(err(field, "must be greater than zero".into()));
            }
        }
        Ok(())
    }

    pub fn check_params_size(&self, bytes: u64) -> Result<(), LimitError> {
        if bytes > self.max_params_bytes {
            return Err(err(
                "params_size",
                format!(
                    "{bytes} bytes exceeds the domain limit of {}",
                    self.max_params_bytes
                ),
            ));
        }
        Ok(())
    }

    pub fn check_training(&self, req: &TrainingRequest) -> Result<(), LimitError> {
        if req.epochs > self.max_epochs {
            return Err(err(
                "epochs",
                format!("{} exceeds max_epochs {}", req.epochs, self.max_epochs),
            ));
        }
        if req.batch_size > self.max_batch_size {
            return Err(err(
                "batch_size",
                format!(
                    "{} exceeds max_batch_size {}",
                    req.batch_size, self.max_batch_size
                ),
            ));
        }
        self.check_params_size(req.params_bytes)
    }
}

impl Encode for ResourceLimits {
    fn encode(&self, out: &mut Vec<u8>) {
        for v in [
            self.max_training_seconds,
            self.max_memory_mb,
            self.max_epochs,
            self.max_batch_size,
            self.max_params_bytes,
        ] {
            put::u64(out, v);
        }
    }
}

/// Inclusive bounds per named parameter, `{name: [low, high]}` as in the original config.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct ParamBounds(pub BTreeMap<String, (f64, f64)>);

impl ParamBounds {
    /// Every bound must be finite with `low <= high`.
    pub fn validate(&self) -> Result<(), LimitError> {
        for (name, &(low, high)) in &self.0 {
            if !low.is_finite() || !high.is_finite() || low > high {
                return Err(err(
                    name,
                    format!("bounds [{low}, {high}] must be finite with low <= high"),
                ));
            }
        }
        Ok(())
    }

    /// Checks named values; NaN and infinities are out of bounds (the original let NaN pass).
    pub fn check<'a>(
        &self,
        values: impl IntoIterator<Item = (&'a str, f64)>,
    ) -> Result<(), LimitError> {
        for (name, v) in values {
            if !v.is_finite() {
                return Err(err(name, "is not a finite number".into()));
            }
            if let Some(&(low, high)) = self.0.get(name) {
                if v < low || v > high {
                    return Err(err(name, format!("{v} is outside [{low}, {high}]")));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_limits_are_enforced() {
        let l = ResourceLimits::default();
        assert!(l
            .check_training(&TrainingRequest {
                epochs: 10,
                batch_size: 32,
                params_bytes: 1
            })
            .is_ok());
        let e = l
            .check_training(&TrainingRequest {
                epochs: 5_001,
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(e.field, "epochs");
        let e = l
            .check_training(&TrainingRequest {
                batch_size: 513,
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(e.field, "batch_size");
        assert!(l.check_params_size((64 << 20) + 1).is_err());
    }

    #[test]
    fn bounds_reject_nan_and_out_of_range() {
        let b = ParamBounds([("x".to_string(), (-5.0, 5.0))].into());
        assert!(b.check([("x", 1.0)]).is_ok());
        assert!(b.check([("x", 5.5)]).is_err());
        assert!(b.check([("x", f64::NAN)]).is_err());
        assert!(b.check([("unbounded", f64::INFINITY)]).is_err());
        assert!(ParamBounds([("x".to_string(), (1.0, 0.0))].into())
            .validate()
            .is_err());
    }
}
