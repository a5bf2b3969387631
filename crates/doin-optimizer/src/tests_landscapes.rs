//! GA + GP (L3) against the plain GA away from the separable bowl that its trend describes
//! exactly: a rotated, ill-conditioned bowl and a multimodal (Rastrigin-like) function.
//!
//! The figures are printed (`cargo test -p doin-optimizer --release landscapes --
//! --nocapture`) and recorded in `docs/optimizer.md`; the assertions only require that L3
//! does not make the GA worse where its trend does not fit.

use std::collections::BTreeMap;
use std::sync::Arc;

use doin_core::params::DomainId;
use doin_core::plugin::{
    DomainInfo, DomainPlugin, Evaluate, OptimizerSetup, PluginResult, PluginSetup, Proposal,
    SyntheticData, Train, TrainRequest,
};
use doin_plugins::quadratic::{encode_params, Quadratic};
use serde_json::{json, Value};

use super::*;
use crate::rng::Rng;

const DIMS: usize = 10;

#[derive(Clone, Copy, Debug)]
enum Shape {
    /// `Σ λᵢ (qᵢ·(x − t))²`, `λ` from 1 to 10 (condition number 10) along a random rotation.
    RotatedBowl,
    /// `Σ (xᵢ − tᵢ)² + 10 Σ (1 − cos 2π(xᵢ − tᵢ))`: a bowl covered in local minima.
    Rastrigin,
}

/// A domain whose training evaluates `shape` at the hyperparameters `x0..x9` in `[−10, 10]`
/// (the quadratic's search space; the quadratic supplies the rest of the plugin).
struct Landscape {
    quadratic: Quadratic,
    shape: Shape,
    target: Vec<f64>,
    rotation: Vec<Vec<f64>>,
}

impl Landscape {
    fn new(shape: Shape) -> Self {
        let quadratic =
            Quadratic::new(&PluginSetup::new(DomainId::new("quadratic").unwrap())).unwrap();
        let target = quadratic.config().target().to_vec();
        // A random orthogonal matrix: Gram-Schmidt on Gaussian rows, from a fixed seed.
        let mut rng = Rng::derive(0x726f_7461_7465, &[DIMS as u64]);
        let mut rotation: Vec<Vec<f64>> = Vec::new();
        for _ in 0..DIMS {
            let mut v: Vec<f64> = (0..DIMS).map(|_| rng.normal()).collect();
            for q in &rotation {
                let dot: f64 = v.iter().zip(q).map(|(a, b)| a * b).sum();
                v.iter_mut().zip(q).for_each(|(a, b)| *a -= dot * b);
            }
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            v.iter_mut().for_each(|a| *a /= norm);
            rotation.push(v);
        }
        Landscape {
            quadratic,
            shape,
            target,
            rotation,
        }
    }

    fn cost(&self, x: &[f64]) -> f64 {
        let d: Vec<f64> = x.iter().zip(&self.target).map(|(a, t)| a - t).collect();
        match self.shape {
            Shape::RotatedBowl => self
                .rotation
                .iter()
                .enumerate()
                .map(|(i, q)| {
                    let along: f64 = q.iter().zip(&d).map(|(a, b)| a * b).sum();
                    (1.0 + 9.0 * i as f64 / (DIMS - 1) as f64) * along * along
                })
                .sum(),
            Shape::Rastrigin => d
                .iter()
                .map(|z| z * z + 10.0 * (1.0 - (2.0 * std::f64::consts::PI * z).cos()))
                .sum(),
        }
    }
}

impl Train for Landscape {
    fn search_space(&self) -> doin_core::limits::ParamBounds {
        self.quadratic.search_space()
    }
    fn train(&self, request: &TrainRequest<'_>) -> PluginResult<Proposal> {
        let x: Vec<f64> = (0..DIMS)
            .map(|i| request.hyperparameters[&format!("x{i}")])
            .collect();
        Ok(Proposal {
            params: encode_params(&x),
            claimed_performance: -self.cost(&x),
            hyperparameters: request.hyperparameters.clone(),
            metrics: BTreeMap::new(),
        })
    }
}

impl DomainPlugin for Landscape {
    fn info(&self) -> DomainInfo {
        self.quadratic.info()
    }
    fn synthetic(&self) -> &dyn SyntheticData {
        &self.quadratic
    }
    fn evaluator(&self) -> &dyn Evaluate {
        &self.quadratic
    }
    fn trainer(&self) -> Option<&dyn Train> {
        Some(self)
    }
}

/// The best cost after `budget` evaluations of a GA seeded `seed`.
fn best_cost(shape: Shape, config: &Value, seed: u64, budget: u64) -> f64 {
    let plugin = Arc::new(Landscape::new(shape));
    let setup = OptimizerSetup {
        seed,
        config: config.clone(),
        ..OptimizerSetup::default()
    };
    let mut engine = Engine::new(plugin, setup, StopSettings::default()).unwrap();
    for _ in 0..budget {
        engine.step().unwrap();
    }
    -engine.stats().best_performance.unwrap()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn landscapes_l3_does_not_hurt_the_ga_where_its_trend_does_not_fit() {
    let seeds = 1..=7u64;
    let plain = json!({"optimizer": "ga"});
    let l3 = json!({"optimizer": "ga", "meta_optimizer": "gp"});
    for (shape, budget) in [(Shape::RotatedBowl, 60), (Shape::Rastrigin, 60)] {
        let run = |config: &Value| {
            median(
                seeds
                    .clone()
                    .map(|s| best_cost(shape, config, s, budget))
                    .collect(),
            )
        };
        let (ga, ga_gp) = (run(&plain), run(&l3));
        eprintln!("{shape:?}: median best cost after {budget} evaluations: GA {ga:.1}, GA + GP {ga_gp:.1}");
        assert!(ga_gp <= ga, "{shape:?}: GA + GP {ga_gp} vs GA {ga}");
    }
}
