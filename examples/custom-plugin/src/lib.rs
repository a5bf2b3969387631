//! A DOIN domain defined outside the DOIN crates, as a user's own crate would: the real root
//! of Newton's cubic `f(x) = x³ − 2x − 5`.
//!
//! It shows the whole recipe of `docs/plugins.md` in one small file:
//!
//! 1. a type implementing the `doin-core` capability traits ([`SyntheticData`], [`Evaluate`],
//!    [`Infer`]) and [`DomainPlugin`], plus an [`Optimize`] for its own search;
//! 2. a [`register`] function that adds it to a [`PluginRegistry`] under [`NAME`];
//! 3. a binary (`src/bin/custom-node.rs`) that starts from
//!    `doin_plugins::builtin_registry()`, registers this domain and hands the registry to
//!    `doin_node::cli::main_with_registry`, so the node is the stock node plus this domain.
//!
//! | | |
//! |---|---|
//! | parameters | one little-endian `f64`, the candidate root `x ∈ [−10, 10]` |
//! | performance | `−f(x)²` (higher is better, 0 at the root) |
//! | synthetic data | the evaluator's measurement offset `e ∈ [−noise, noise]`, 8 bytes, from its seed |
//! | evaluation | `−f(x)² + e` |
//! | optimizer | a Newton step, then a seeded random step; keeps the better point |
//! | inference | `{}` → `{"root": x, "residual": f(x)}` |
//!
//! The only configuration key is `noise` in the domain's `synthetic_data_config` (or the
//! `optimization_config` it falls back to), default [`DEFAULT_NOISE`].

use std::sync::Arc;

use doin_core::hash::Hash32;
use doin_core::plugin::{
    checked_score, Dataset, DomainInfo, DomainPlugin, Evaluate, Infer, Migrant, Optimize,
    OptimizerSetup, PluginError, PluginRegistry, PluginResult, PluginSetup, Proposal,
    ProposeContext, SyntheticData,
};
use serde_json::{json, Value};

/// The name the domain is registered under (the config's `optimization_plugin`).
pub const NAME: &str = "cubic_root";
/// Version of the data and evaluation semantics: bump on any change.
pub const VERSION: u32 = 1;
/// Half-width of an evaluator's measurement offset when `noise` is absent: far inside the
/// chain's tolerance, yet enough for evaluators to disagree slightly.
pub const DEFAULT_NOISE: f64 = 1e-3;
/// Inclusive bounds of `x`: they keep `f(x)²` finite and far from overflow.
pub const BOUNDS: (f64, f64) = (-10.0, 10.0);

/// Adds this domain to `registry` (fails if the name is taken).
pub fn register(registry: &mut PluginRegistry) -> PluginResult<()> {
    registry.register(NAME, |setup: &PluginSetup| {
        Ok(Arc::new(CubicRoot::new(setup)?) as Arc<dyn DomainPlugin>)
    })
}

/// `f(x) = x³ − 2x − 5`.
fn f(x: f64) -> f64 {
    x * x * x - 2.0 * x - 5.0
}

/// `f'(x) = 3x² − 2`.
fn df(x: f64) -> f64 {
    3.0 * x * x - 2.0
}

fn performance(x: f64) -> f64 {
    let y = f(x);
    -(y * y)
}

/// Decodes and checks a parameter blob: 8 bytes, finite, inside [`BOUNDS`].
pub fn decode(params: &[u8]) -> PluginResult<f64> {
    let bytes: [u8; 8] = params.try_into().map_err(|_| PluginError::InvalidParams {
        reason: format!("expected 8 bytes (one f64), got {}", params.len()),
    })?;
    let x = f64::from_le_bytes(bytes);
    if !(BOUNDS.0..=BOUNDS.1).contains(&x) {
        return Err(PluginError::InvalidParams {
            reason: format!("x = {x} is outside [{}, {}]", BOUNDS.0, BOUNDS.1),
        });
    }
    Ok(x)
}

/// Encodes `x` as parameters.
pub fn encode(x: f64) -> Vec<u8> {
    x.to_le_bytes().to_vec()
}

/// A uniform number in `[0, 1)` from a word (splitmix64's finalizer): the same on every
/// machine, which synthetic data requires.
fn unit(mut z: u64) -> f64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// The domain instance: shared by the node's evaluator, optimizer and inference threads.
#[derive(Debug)]
pub struct CubicRoot {
    info: DomainInfo,
    noise: f64,
}

impl CubicRoot {
    /// Reads `noise` from the data configuration.
    pub fn new(setup: &PluginSetup) -> PluginResult<Self> {
        let noise = match setup.data_config.get("noise") {
            None => DEFAULT_NOISE,
            Some(v) => v
                .as_f64()
                .filter(|n| n.is_finite() && (0.0..=1.0).contains(n))
                .ok_or_else(|| PluginError::InvalidConfig {
                    field: "noise".into(),
                    reason: format!("must be a number in [0, 1], got {v}"),
                })?,
        };
        Ok(CubicRoot {
            info: DomainInfo {
                id: setup.domain.clone(),
                description: "the real root of x³ − 2x − 5 (example of an out-of-tree domain)"
                    .into(),
                performance_metric: "neg_squared_residual".into(),
                version: VERSION,
                target_performance: setup.target_performance,
                // Where a search starts: the performance at x = 0.
                baseline_performance: performance(0.0),
            },
            noise,
        })
    }
}

impl SyntheticData for CubicRoot {
    /// The offset `e = noise · (2u − 1)`, `u` uniform from the first 8 bytes of the seed.
    fn generate(&self, seed: &Hash32) -> PluginResult<Dataset> {
        let mut word = [0u8; 8];
        word.copy_from_slice(&seed.0[..8]);
        let e = self.noise * (2.0 * unit(u64::from_le_bytes(word)) - 1.0) + 0.0;
        Ok(Dataset::new(e.to_le_bytes().to_vec()))
    }
}

impl Evaluate for CubicRoot {
    fn evaluate(&self, params: &[u8], data: &Dataset) -> PluginResult<f64> {
        let x = decode(params)?;
        let bytes: [u8; 8] =
            data.bytes
                .as_slice()
                .try_into()
                .map_err(|_| PluginError::InvalidData {
                    reason: format!("expected 8 bytes, got {}", data.bytes.len()),
                })?;
        checked_score(performance(x) + f64::from_le_bytes(bytes))
    }
}

impl Infer for CubicRoot {
    fn infer(&self, params: &[u8], input: &Value) -> PluginResult<Value> {
        let x = decode(params)?;
        if !input.is_object() {
            return Err(PluginError::InvalidInput {
                reason: "expected a JSON object (no keys are needed)".into(),
            });
        }
        Ok(json!({"root": x, "residual": f(x)}))
    }
}

impl DomainPlugin for CubicRoot {
    fn info(&self) -> DomainInfo {
        self.info.clone()
    }

    fn synthetic(&self) -> &dyn SyntheticData {
        self
    }

    fn evaluator(&self) -> &dyn Evaluate {
        self
    }

    fn inference(&self) -> Option<&dyn Infer> {
        Some(self)
    }

    fn new_optimizer(&self, setup: &OptimizerSetup) -> PluginResult<Box<dyn Optimize>> {
        let start = BOUNDS.0 + (BOUNDS.1 - BOUNDS.0) * unit(setup.seed);
        Ok(Box::new(NewtonSearch {
            x: start,
            performance: performance(start),
            seed: setup.seed,
        }))
    }
}

/// The optimizer: from its current point, a Newton step and a seeded random step; the better
/// of the three points is kept. Claims are exact (noiseless) and never decrease.
#[derive(Debug)]
pub struct NewtonSearch {
    x: f64,
    performance: f64,
    seed: u64,
}

impl NewtonSearch {
    fn consider(&mut self, x: f64) {
        let x = x.clamp(BOUNDS.0, BOUNDS.1);
        let p = performance(x);
        if x.is_finite() && p > self.performance {
            self.x = x;
            self.performance = p;
        }
    }
}

impl Optimize for NewtonSearch {
    fn propose(&mut self, ctx: &ProposeContext<'_>) -> PluginResult<Proposal> {
        if let Some(champion) = ctx.champion {
            self.inject(champion)?;
        }
        let slope = df(self.x);
        if slope.abs() > 1e-9 {
            self.consider(self.x - f(self.x) / slope);
        }
        let u = unit(self.seed ^ ctx.seed ^ ctx.round.rotate_left(32));
        self.consider(self.x + (2.0 * u - 1.0));
        Ok(Proposal {
            params: encode(self.x),
            claimed_performance: self.performance,
            hyperparameters: Default::default(),
            metrics: [("x".to_string(), self.x)].into(),
        })
    }

    fn inject(&mut self, migrant: &Migrant) -> PluginResult<()> {
        let x = decode(&migrant.params)?;
        self.consider(x);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use doin_core::hash::HashKind;
    use doin_core::limits::ResourceLimits;
    use doin_core::params::DomainId;
    use doin_core::plugin::measure;

    fn domain() -> Arc<dyn DomainPlugin> {
        let mut registry = PluginRegistry::new();
        register(&mut registry).unwrap();
        let setup = PluginSetup::new(DomainId::new("cubic").unwrap());
        registry.instantiate(NAME, &setup).unwrap()
    }

    #[test]
    fn the_optimizer_finds_the_root_and_evaluators_agree() {
        let domain = domain();
        let mut opt = domain.new_optimizer(&OptimizerSetup::default()).unwrap();
        let mut last = f64::NEG_INFINITY;
        for round in 0..30 {
            let ctx = ProposeContext {
                round,
                ..ProposeContext::default()
            };
            let p = opt.propose(&ctx).unwrap();
            assert!(p.claimed_performance >= last);
            last = p.claimed_performance;
        }
        assert!(last > -1e-12, "{last}");
        let root = opt.propose(&ProposeContext::default()).unwrap().params;
        assert!((decode(&root).unwrap() - 2.094_551_481_5).abs() < 1e-6);
        let limits = ResourceLimits::default();
        let seed = HashKind::DataSeed.hash(b"e");
        let a = measure(domain.as_ref(), &root, &seed, &limits).unwrap();
        assert_eq!(a, measure(domain.as_ref(), &root, &seed, &limits).unwrap());
        assert!(a.measured.abs() <= DEFAULT_NOISE + 1e-12);
        let answer = domain
            .inference()
            .unwrap()
            .infer(&root, &json!({}))
            .unwrap();
        assert!(answer["residual"].as_f64().unwrap().abs() < 1e-6);
    }

    #[test]
    fn bad_blobs_blame_the_params() {
        let domain = domain();
        let data = domain.synthetic().generate(&Hash32([1; 32])).unwrap();
        for blob in [vec![], vec![0; 9], encode(f64::NAN), encode(11.0)] {
            let err = domain.evaluator().evaluate(&blob, &data).unwrap_err();
            assert!(err.blames_params(), "{err}");
        }
    }
}
