//! Hyperparameters and the parameter blob (hyperparameters + weights, one versioned encoding).
//!
//! # Encoding (version 1, all little-endian)
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `"DOIN-TSF"` |
//! | 2 | version `u16` = 1 |
//! | 1 | activation (0 relu, 1 tanh, 2 gelu, 3 leaky_relu) |
//! | 1 | depth (hidden layers) |
//! | 2 | window `u16` |
//! | 2 | width `u16` |
//! | 2 | horizon `u16` |
//! | 8 | learning rate `f64` |
//! | 4 | batch size `u32` |
//! | 4 | epochs `u32` (the maximum asked for) |
//! | 4 | epoch of the kept weights `u32` (the best validation epoch under early stopping) |
//! | 8 | training seed `u64` |
//! | … | per layer (hidden layers, then the output layer): weight `out × in` then bias `out`, `f32`s |
//!
//! The tensor shapes follow from the header, so the blob must be exactly as long as they say.
//! Decoding checks the architecture against the domain's search space **before** allocating,
//! so a peer cannot make an evaluator allocate or compute more than the largest model the
//! domain allows; every weight must be finite.
//!
//! Why not safetensors: a fixed header plus raw `f32`s is a few lines to validate completely
//! without a parser, hashes canonically (one encoding per model), and carries the recipe
//! (hyperparameters, seed) next to the weights so a reveal is self-describing.

use std::collections::BTreeMap;
use std::fmt;

use doin_core::limits::ParamBounds;
use doin_core::plugin::{PluginError, PluginResult};

/// Magic bytes at the start of a parameter blob.
const PARAMS_MAGIC: &[u8; 8] = b"DOIN-TSF";
/// Version of the parameter encoding.
pub const PARAMS_VERSION: u16 = 1;
/// Bytes of the header before the weights.
pub const PARAMS_HEADER_BYTES: usize = 8 + 2 + 1 + 1 + 2 + 2 + 2 + 8 + 4 + 4 + 4 + 8;

/// Most hidden layers.
pub const MAX_DEPTH: usize = 3;
/// Widest hidden layer.
pub const MAX_WIDTH: usize = 256;
/// Smallest input window.
pub const MIN_WINDOW: usize = 4;
/// Largest batch size.
pub const MAX_BATCH_SIZE: usize = 256;
/// Most epochs one candidate may ask for.
pub const MAX_EPOCHS: usize = 1_000;
/// Learning-rate bounds of the search space.
pub const LEARNING_RATE_RANGE: (f64, f64) = (1e-4, 3e-2);

/// Hidden-layer nonlinearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Activation {
    Relu,
    Tanh,
    /// The tanh approximation of GELU (`approximate="tanh"`), as in PyTorch.
    Gelu,
    /// Negative slope 0.01, as in PyTorch.
    LeakyRelu,
}

impl Activation {
    /// Every activation, in code order.
    pub const ALL: [Self; 4] = [Self::Relu, Self::Tanh, Self::Gelu, Self::LeakyRelu];

    /// Its code in hyperparameters and the parameter header.
    pub fn code(self) -> u8 {
        match self {
            Self::Relu => 0,
            Self::Tanh => 1,
            Self::Gelu => 2,
            Self::LeakyRelu => 3,
        }
    }

    /// The activation with `code`, if any.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Relu => "relu",
            Self::Tanh => "tanh",
            Self::Gelu => "gelu",
            Self::LeakyRelu => "leaky_relu",
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One candidate's recipe: architecture and training settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyperparameters {
    /// Input length.
    pub window: usize,
    /// Hidden layers (1 to [`MAX_DEPTH`]).
    pub depth: usize,
    /// Units per hidden layer.
    pub width: usize,
    pub activation: Activation,
    /// Adam's step size.
    pub learning_rate: f64,
    pub batch_size: usize,
    /// Most epochs; early stopping may end sooner.
    pub epochs: usize,
}

impl Default for Hyperparameters {
    /// A sensible first candidate: a window covering the longest default season, two hidden
    /// layers of 64 (about 8k weights) and a learning rate Adam rarely diverges with.
    fn default() -> Self {
        Hyperparameters {
            window: 48,
            depth: 2,
            width: 64,
            activation: Activation::Relu,
            learning_rate: 3e-3,
            batch_size: 64,
            epochs: 60,
        }
    }
}

/// Names of the hyperparameters, as in [`Hyperparameters::to_map`] and the search space.
pub const HYPERPARAMETER_NAMES: [&str; 7] = [
    "window",
    "depth",
    "width",
    "activation",
    "learning_rate",
    "batch_size",
    "epochs",
];

/// The search space of a domain whose windows may be up to `max_window` long.
pub fn search_space(max_window: usize) -> ParamBounds {
    ParamBounds(
        [
            ("window", (MIN_WINDOW as f64, max_window as f64)),
            ("depth", (1.0, MAX_DEPTH as f64)),
            ("width", (4.0, MAX_WIDTH as f64)),
            ("activation", (0.0, (Activation::ALL.len() - 1) as f64)),
            ("learning_rate", LEARNING_RATE_RANGE),
            ("batch_size", (8.0, MAX_BATCH_SIZE as f64)),
            ("epochs", (1.0, MAX_EPOCHS as f64)),
        ]
        .into_iter()
        .map(|(name, bound)| (name.to_string(), bound))
        .collect(),
    )
}

impl Hyperparameters {
    /// The hyperparameters as named numbers (the form engines and the analytics store use).
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        [
            ("window", self.window as f64),
            ("depth", self.depth as f64),
            ("width", self.width as f64),
            ("activation", f64::from(self.activation.code())),
            ("learning_rate", self.learning_rate),
            ("batch_size", self.batch_size as f64),
            ("epochs", self.epochs as f64),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Reads named numbers over `base`: integer names are rounded to the nearest integer,
    /// every value must lie in `space`, and a name outside it is an error. Absent names keep
    /// `base`'s value.
    pub fn from_map(
        values: &BTreeMap<String, f64>,
        base: &Hyperparameters,
        space: &ParamBounds,
    ) -> PluginResult<Self> {
        if let Some(unknown) = values.keys().find(|k| !space.0.contains_key(*k)) {
            return Err(PluginError::InvalidInput {
                reason: format!(
                    "unknown hyperparameter {unknown:?}: expected one of {}",
                    HYPERPARAMETER_NAMES.join(", ")
                ),
            });
        }
        space.check(values.iter().map(|(k, v)| (k.as_str(), *v)))?;
        let int = |name: &str, default: usize| -> usize {
            values
                .get(name)
                // In bounds and finite (checked above), so the cast cannot saturate.
                .map_or(default, |v| v.round() as usize)
        };
        let activation = match values.get("activation") {
            None => base.activation,
            Some(v) => Activation::from_code(v.round() as u8).unwrap_or(base.activation),
        };
        Ok(Hyperparameters {
            window: int("window", base.window),
            depth: int("depth", base.depth),
            width: int("width", base.width),
            activation,
            learning_rate: values
                .get("learning_rate")
                .copied()
                .unwrap_or(base.learning_rate),
            batch_size: int("batch_size", base.batch_size),
            epochs: int("epochs", base.epochs),
        })
    }

    /// Layer shapes `(out, in)`: hidden layers, then the output layer.
    pub fn layer_shapes(&self, horizon: usize) -> Vec<(usize, usize)> {
        let mut shapes = Vec::with_capacity(self.depth + 1);
        let mut inputs = self.window;
        for _ in 0..self.depth {
            shapes.push((self.width, inputs));
            inputs = self.width;
        }
        shapes.push((horizon, inputs));
        shapes
    }

    /// Number of `f32` weights and biases of the network.
    pub fn weight_count(&self, horizon: usize) -> usize {
        self.layer_shapes(horizon)
            .iter()
            .map(|&(out, inp)| out * inp + out)
            .sum()
    }

    /// Size of the encoded parameter blob.
    pub fn params_bytes(&self, horizon: usize) -> usize {
        PARAMS_HEADER_BYTES + 4 * self.weight_count(horizon)
    }
}

/// A decoded parameter blob: the recipe, the training record and the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelParams {
    pub hyper: Hyperparameters,
    pub horizon: usize,
    /// The epoch whose weights were kept: the best validation epoch under early stopping,
    /// else the last.
    pub epochs_run: usize,
    /// Seed of the training run that produced the weights.
    pub train_seed: u64,
    /// Per layer (hidden, then output): `(weight out × in row-major, bias)`.
    pub layers: Vec<(Vec<f32>, Vec<f32>)>,
}

impl ModelParams {
    /// The blob described in the module docs.
    pub fn encode(&self) -> Vec<u8> {
        let h = &self.hyper;
        let mut out = Vec::with_capacity(h.params_bytes(self.horizon));
        out.extend_from_slice(PARAMS_MAGIC);
        out.extend_from_slice(&PARAMS_VERSION.to_le_bytes());
        out.push(h.activation.code());
        out.push(u8::try_from(h.depth).unwrap_or(u8::MAX));
        for v in [h.window, h.width, self.horizon] {
            out.extend_from_slice(&u16::try_from(v).unwrap_or(u16::MAX).to_le_bytes());
        }
        out.extend_from_slice(&h.learning_rate.to_le_bytes());
        for v in [h.batch_size, h.epochs, self.epochs_run] {
            out.extend_from_slice(&u32::try_from(v).unwrap_or(u32::MAX).to_le_bytes());
        }
        out.extend_from_slice(&self.train_seed.to_le_bytes());
        for (weight, bias) in &self.layers {
            for v in weight.iter().chain(bias) {
                // `+ 0.0` writes −0.0 as +0.0: one encoding per model.
                out.extend_from_slice(&(v + 0.0).to_le_bytes());
            }
        }
        out
    }

    /// Decodes and checks a blob for a domain with this `horizon` and search `space`. Every
    /// failure is [`PluginError::InvalidParams`]: the blob's author is at fault.
    pub fn decode(bytes: &[u8], horizon: usize, space: &ParamBounds) -> PluginResult<Self> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(8)? != PARAMS_MAGIC {
            return Err(invalid("not a ts_forecast parameter blob (bad magic)"));
        }
        let version = r.u16()?;
        if version != PARAMS_VERSION {
            return Err(invalid(format!(
                "parameter encoding version {version}, expected {PARAMS_VERSION}"
            )));
        }
        let activation_code = r.u8()?;
        let activation = Activation::from_code(activation_code)
            .ok_or_else(|| invalid(format!("unknown activation code {activation_code}")))?;
        let depth = usize::from(r.u8()?);
        let window = usize::from(r.u16()?);
        let width = usize::from(r.u16()?);
        let blob_horizon = usize::from(r.u16()?);
        let learning_rate = r.f64()?;
        let batch_size = r.u32()?;
        let epochs = r.u32()?;
        let epochs_run = r.u32()?;
        let train_seed = r.u64()?;
        if blob_horizon != horizon {
            return Err(invalid(format!(
                "model forecasts {blob_horizon} steps, the domain's horizon is {horizon}"
            )));
        }
        let mut named = BTreeMap::new();
        for (name, v) in [
            ("window", window as f64),
            ("depth", depth as f64),
            ("width", width as f64),
            ("learning_rate", learning_rate),
            ("batch_size", batch_size as f64),
            ("epochs", epochs as f64),
        ] {
            named.insert(name.to_string(), v);
        }
        space
            .check(named.iter().map(|(k, v)| (k.as_str(), *v)))
            .map_err(|e| invalid(format!("outside the domain's search space: {e}")))?;
        if epochs_run > epochs {
            return Err(invalid(format!(
                "{epochs_run} epochs run of at most {epochs}"
            )));
        }
        let hyper = Hyperparameters {
            window,
            depth,
            width,
            activation,
            learning_rate,
            batch_size,
            epochs,
        };
        let expected = hyper.params_bytes(horizon);
        if bytes.len() != expected {
            return Err(invalid(format!(
                "{} bytes, but window {window}, depth {depth}, width {width} and horizon \
                 {horizon} need exactly {expected}",
                bytes.len()
            )));
        }
        let mut layers = Vec::with_capacity(depth + 1);
        for (out, inp) in hyper.layer_shapes(horizon) {
            let weight = r.f32s(out * inp)?;
            let bias = r.f32s(out)?;
            layers.push((weight, bias));
        }
        Ok(ModelParams {
            hyper,
            horizon,
            epochs_run,
            train_seed,
            layers,
        })
    }
}

fn invalid(reason: impl Into<String>) -> PluginError {
    PluginError::InvalidParams {
        reason: reason.into(),
    }
}

/// A bounds-checked cursor over a blob.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> PluginResult<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        let Some(end) = end else {
            return Err(invalid(format!(
                "truncated: {} bytes, needed more than {}",
                self.bytes.len(),
                self.at
            )));
        };
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> PluginResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> PluginResult<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> PluginResult<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> PluginResult<usize> {
        Ok(usize::try_from(u32::from_le_bytes(self.array()?)).unwrap_or(usize::MAX))
    }

    fn u64(&mut self) -> PluginResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn f64(&mut self) -> PluginResult<f64> {
        Ok(f64::from_le_bytes(self.array()?))
    }

    fn f32s(&mut self, n: usize) -> PluginResult<Vec<f32>> {
        let bytes = self.take(n.saturating_mul(4))?;
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if values.iter().any(|v| !v.is_finite()) {
            return Err(invalid("a weight is not a finite number"));
        }
        Ok(values)
    }
}
