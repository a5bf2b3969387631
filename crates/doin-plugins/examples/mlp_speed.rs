//! Training speed of one small MLP through tch, for comparison with the same model in
//! PyTorch (`scripts/mlp_speed.py`; `scripts/bench-tch-vs-pytorch.sh` runs both).
//!
//! Both sides train the same network the same way: inputs `window` → `depth` hidden layers of
//! `width` ReLU units → `horizon` outputs, Adam (lr 1e-3), L1 loss, one fixed random batch
//! per step, on the CPU with the given intra-op thread count. A short warm-up is not timed.
//!
//! ```text
//! cargo run --release -p doin-plugins --example mlp_speed -- --steps 3000 --threads 1
//! ```
//! Prints one line: `tch steps=… seconds=… steps_per_s=…`.

use std::error::Error;
use std::time::Instant;

use tch::{COptimizer, Device, Kind, Tensor};

/// The model and run shape, identical in the Python script.
struct Shape {
    window: i64,
    width: i64,
    depth: usize,
    horizon: i64,
    batch: i64,
    steps: usize,
    threads: i32,
}

fn parse() -> Result<Shape, Box<dyn Error>> {
    let mut shape = Shape {
        window: 48,
        width: 64,
        depth: 2,
        horizon: 8,
        batch: 64,
        steps: 3_000,
        threads: 1,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let [key, value] = pair else {
            return Err(format!("missing value after {}", pair[0]).into());
        };
        match key.as_str() {
            "--window" => shape.window = value.parse()?,
            "--width" => shape.width = value.parse()?,
            "--depth" => shape.depth = value.parse()?,
            "--horizon" => shape.horizon = value.parse()?,
            "--batch" => shape.batch = value.parse()?,
            "--steps" => shape.steps = value.parse()?,
            "--threads" => shape.threads = value.parse()?,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    Ok(shape)
}

fn main() -> Result<(), Box<dyn Error>> {
    let s = parse()?;
    tch::set_num_threads(s.threads);
    tch::manual_seed(0);
    let opts = (Kind::Float, Device::Cpu);

    // nn.Linear's default init: U(−1/√in, 1/√in) for weights and biases.
    let mut layers = Vec::new();
    let mut inputs = s.window;
    for i in 0..=s.depth {
        let out = if i == s.depth { s.horizon } else { s.width };
        let bound = 1.0 / (inputs as f64).sqrt();
        let w = (Tensor::f_rand([out, inputs], opts)? * (2.0 * bound) - bound)
            .f_set_requires_grad(true)?;
        let b = (Tensor::f_rand([out], opts)? * (2.0 * bound) - bound).f_set_requires_grad(true)?;
        layers.push((w, b));
        inputs = out;
    }
    let mut opt = COptimizer::adam(1e-3, 0.9, 0.999, 0.0, 1e-8, false)?;
    for (w, b) in &layers {
        opt.add_parameters(w, 0)?;
        opt.add_parameters(b, 0)?;
    }
    let x = Tensor::f_randn([s.batch, s.window], opts)?;
    let y = Tensor::f_randn([s.batch, s.horizon], opts)?;

    let step = |opt: &mut COptimizer| -> Result<f64, Box<dyn Error>> {
        let mut h = x.shallow_clone();
        for (i, (w, b)) in layers.iter().enumerate() {
            h = h.f_linear(w, Some(b))?;
            if i < s.depth {
                h = h.f_relu()?;
            }
        }
        let loss = h.f_sub(&y)?.f_abs()?.f_mean(Kind::Float)?;
        opt.zero_grad()?;
        loss.f_backward()?;
        opt.step()?;
        Ok(0.0)
    };
    for _ in 0..s.steps.min(100) {
        step(&mut opt)?;
    }
    let started = Instant::now();
    for _ in 0..s.steps {
        step(&mut opt)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "tch steps={} seconds={seconds:.3} steps_per_s={:.1}",
        s.steps,
        s.steps as f64 / seconds
    );
    Ok(())
}
