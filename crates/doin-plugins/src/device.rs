//! Where tensors live and how to make libtorch repeatable.
//!
//! Every plugin that trains or scores a model with tch starts with these two calls:
//!
//! 1. [`select_device`] turns the operator's [`DevicePreference`] (from the node config)
//!    into a [`tch::Device`]. The default is the CPU; a CUDA GPU is used only when asked for
//!    (`cuda` or `auto`) *and* libtorch can see one, so the same config runs on any machine.
//! 2. [`configure_determinism`] fixes the intra-op thread count and seeds every libtorch
//!    random generator, so an evaluator that re-scores a model on the same synthetic data
//!    gets the same number on the same hardware.
//!
//! Both act on process-wide libtorch state: call them once at start-up (or before each
//! evaluation), not concurrently from several threads that each expect their own seed.
//!
//! # Limits of determinism
//!
//! tch 0.26 does not expose `torch.use_deterministic_algorithms`, so a few CUDA kernels that
//! use atomic adds (scatter/index add, some backward passes) can still differ in the last
//! bits between runs on a GPU. CPU results with a fixed thread count are bitwise repeatable,
//! and across different hardware results can differ slightly anyway: this is why verdicts
//! compare measurements within each domain's absolute + relative tolerance.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::{Cuda, Device};

/// Which device a plugin should put its tensors on.
///
/// Written in config files as `"cpu"` (the default), `"cuda"` or `"auto"`.
///
/// ```
/// use doin_plugins::DevicePreference;
///
/// assert_eq!(DevicePreference::default(), DevicePreference::Cpu);
/// assert_eq!("auto".parse::<DevicePreference>().unwrap(), DevicePreference::Auto);
/// assert_eq!(DevicePreference::Cuda.to_string(), "cuda");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DevicePreference {
    /// Always the CPU. The default: it is available everywhere and bitwise repeatable.
    #[default]
    Cpu,
    /// The first CUDA GPU. [`select_device`] falls back to the CPU when there is none;
    /// [`try_select_device`] reports an error instead.
    Cuda,
    /// The first CUDA GPU when libtorch sees one, otherwise the CPU.
    Auto,
}

impl DevicePreference {
    /// Every preference, in the order the CLI lists them.
    pub const ALL: [Self; 3] = [Self::Cpu, Self::Cuda, Self::Auto];

    /// The name used in config files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cpu => "cpu",
            Self::Cuda => "cuda",
            Self::Auto => "auto",
        }
    }
}

impl fmt::Display for DevicePreference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DevicePreference {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| DeviceError::UnknownPreference {
                given: s.to_owned(),
            })
    }
}

/// Why a device could not be chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// A device name that is not `cpu`, `cuda` or `auto`.
    #[error("unknown device {given:?}: expected \"cpu\", \"cuda\" or \"auto\"")]
    UnknownPreference {
        /// The text that was given.
        given: String,
    },
    /// `cuda` was required but libtorch sees no CUDA device (no GPU, no driver, or a
    /// CPU-only libtorch).
    #[error("a CUDA device was required but libtorch reports none (is the NVIDIA driver loaded and libtorch built with CUDA?)")]
    CudaUnavailable,
}

/// Whether libtorch can run on a CUDA device here.
///
/// False on machines without an NVIDIA GPU or driver, and with a CPU-only libtorch. Also
/// false in an executable whose crate does not link `libtorch.so` with `--no-as-needed`
/// (the linker then drops `libtorch_cuda.so`): see this crate's `build.rs` and
/// `docs/setup.md` for the lines every binary crate needs.
pub fn cuda_available() -> bool {
    Cuda::is_available()
}

/// The device to use for `prefer`: the CPU by default, the first CUDA device when `prefer`
/// is [`DevicePreference::Cuda`] or [`DevicePreference::Auto`] and libtorch sees one.
///
/// Never fails: a `Cuda` preference on a machine without CUDA falls back to the CPU. Use
/// [`try_select_device`] where a GPU is mandatory.
pub fn select_device(prefer: DevicePreference) -> Device {
    match prefer {
        DevicePreference::Cpu => Device::Cpu,
        DevicePreference::Cuda | DevicePreference::Auto => {
            if cuda_available() {
                Device::Cuda(0)
            } else {
                Device::Cpu
            }
        }
    }
}

/// Like [`select_device`], but a [`DevicePreference::Cuda`] preference without a usable CUDA
/// device is an error instead of a silent fallback to the CPU.
pub fn try_select_device(prefer: DevicePreference) -> Result<Device, DeviceError> {
    match prefer {
        DevicePreference::Cuda if !cuda_available() => Err(DeviceError::CudaUnavailable),
        _ => Ok(select_device(prefer)),
    }
}

/// Makes libtorch repeatable for this process.
///
/// * `threads`: intra-op threads for CPU kernels (`tch::set_num_threads`). The order in which
///   a reduction adds partial sums depends on it, so every run that must agree bitwise uses
///   the same value. `0` means "one per available core".
/// * `seed`: seeds the CPU generator and every CUDA generator (`tch::manual_seed`, plus
///   `tch::Cuda::manual_seed_all` when CUDA is available), so `randn`, dropout and weight
///   initialisation repeat.
///
/// Also turns off cuDNN benchmark mode, which otherwise picks convolution algorithms by
/// timing them and so can change results from run to run.
pub fn configure_determinism(threads: usize, seed: i64) {
    let threads = if threads == 0 {
        std::thread::available_parallelism().map_or(1, usize::from)
    } else {
        threads
    };
    tch::set_num_threads(i32::try_from(threads).unwrap_or(i32::MAX));
    tch::manual_seed(seed);
    if cuda_available() {
        // at::manual_seed already seeds the CUDA generators once CUDA is initialised; this
        // makes it explicit. The bits of the i64 seed are kept as they are.
        Cuda::manual_seed_all(u64::from_ne_bytes(seed.to_ne_bytes()));
    }
    Cuda::cudnn_set_benchmark(false);
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, MutexGuard};

    use tch::{Kind, Tensor};

    use super::*;

    /// libtorch's seed and thread count are process-wide; tests that set them take turns.
    static TORCH_GLOBALS: Mutex<()> = Mutex::new(());

    fn torch_globals() -> MutexGuard<'static, ()> {
        TORCH_GLOBALS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn seeded_randn(device: Device, seed: i64) -> Vec<f32> {
        configure_determinism(1, seed);
        let t = Tensor::randn([4, 8], (Kind::Float, device)).to_device(Device::Cpu);
        Vec::<f32>::try_from(t.flatten(0, -1)).expect("a float tensor converts to Vec<f32>")
    }

    #[test]
    fn cpu_is_the_default_and_always_cpu() {
        assert_eq!(DevicePreference::default(), DevicePreference::Cpu);
        assert_eq!(select_device(DevicePreference::Cpu), Device::Cpu);
        assert_eq!(try_select_device(DevicePreference::Cpu), Ok(Device::Cpu));
    }

    #[test]
    fn cuda_and_auto_follow_availability() {
        let expected = if cuda_available() {
            Device::Cuda(0)
        } else {
            Device::Cpu
        };
        assert_eq!(select_device(DevicePreference::Auto), expected);
        assert_eq!(select_device(DevicePreference::Cuda), expected);
        assert_eq!(try_select_device(DevicePreference::Auto), Ok(expected));
        if cuda_available() {
            assert_eq!(
                try_select_device(DevicePreference::Cuda),
                Ok(Device::Cuda(0))
            );
        } else {
            assert_eq!(
                try_select_device(DevicePreference::Cuda),
                Err(DeviceError::CudaUnavailable)
            );
        }
    }

    #[test]
    fn matmul_runs_on_every_selectable_device() {
        for prefer in DevicePreference::ALL {
            let device = select_device(prefer);
            let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0])
                .reshape([2, 2])
                .to_device(device);
            let b = Tensor::from_slice(&[5.0f32, 6.0, 7.0, 8.0])
                .reshape([2, 2])
                .to_device(device);
            let c = a.matmul(&b);
            assert_eq!(
                c.device(),
                device,
                "{prefer}: result stays on the selected device"
            );
            let c = Vec::<f32>::try_from(c.to_device(Device::Cpu).flatten(0, -1))
                .expect("a float tensor converts to Vec<f32>");
            assert_eq!(c, [19.0, 22.0, 43.0, 50.0], "{prefer}");
        }
    }

    #[test]
    fn same_seed_same_numbers_other_seed_other_numbers() {
        let _guard = torch_globals();
        for prefer in [DevicePreference::Cpu, DevicePreference::Auto] {
            let device = select_device(prefer);
            let first = seeded_randn(device, 42);
            let second = seeded_randn(device, 42);
            let other = seeded_randn(device, 43);
            assert_eq!(first.len(), 32);
            assert!(first.iter().all(|x| x.is_finite()));
            assert_eq!(first, second, "{prefer}: same seed, same draw");
            assert_ne!(first, other, "{prefer}: another seed, another draw");
        }
    }

    #[test]
    fn thread_count_is_applied() {
        let _guard = torch_globals();
        configure_determinism(1, 0);
        assert_eq!(tch::get_num_threads(), 1);
        configure_determinism(2, 0);
        assert_eq!(tch::get_num_threads(), 2);
        configure_determinism(0, 0);
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(usize::try_from(tch::get_num_threads()).ok(), Some(cores));
        configure_determinism(1, 0);
    }

    #[test]
    fn seeded_training_step_repeats() {
        // A miniature of what an evaluator does: init weights from the seed, one SGD step on
        // seeded data, read the loss. Twice with the same seed must agree bitwise on the CPU.
        let _guard = torch_globals();
        let run = |seed: i64| -> f64 {
            configure_determinism(1, seed);
            let opts = (Kind::Float, Device::Cpu);
            let x = Tensor::randn([64, 3], opts);
            let y = x.sum_dim_intlist(1, true, Kind::Float);
            let mut w = Tensor::randn([3, 1], opts).set_requires_grad(true);
            let loss = (x.matmul(&w) - &y).square().mean(Kind::Float);
            loss.backward();
            tch::no_grad(|| {
                let _ = w
                    .f_sub_(&(w.grad() * 0.1))
                    .expect("in-place update of a leaf");
            });
            (x.matmul(&w) - &y)
                .square()
                .mean(Kind::Float)
                .double_value(&[])
        };
        let a = run(7);
        assert!(a.is_finite());
        assert_eq!(a.to_bits(), run(7).to_bits());
        assert_ne!(a.to_bits(), run(8).to_bits());
    }

    #[test]
    fn preference_parses_and_round_trips() {
        for prefer in DevicePreference::ALL {
            assert_eq!(prefer.to_string().parse::<DevicePreference>(), Ok(prefer));
            let json = serde_json::to_string(&prefer).expect("serialize");
            assert_eq!(json, format!("\"{prefer}\""));
            let back: DevicePreference = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(back, prefer);
        }
        assert_eq!(
            " CUDA ".parse::<DevicePreference>(),
            Ok(DevicePreference::Cuda)
        );
        let err = "tpu"
            .parse::<DevicePreference>()
            .expect_err("tpu is no device");
        assert_eq!(
            err,
            DeviceError::UnknownPreference {
                given: "tpu".into()
            }
        );
        assert!(err.to_string().contains("\"cpu\", \"cuda\" or \"auto\""));
        assert!(serde_json::from_str::<DevicePreference>("\"gpu\"").is_err());
    }
}
