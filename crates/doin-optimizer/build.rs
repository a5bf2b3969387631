//! Gives this package's executables (unit tests, doctests, a future binary) an rpath to
//! libtorch, so they start without `LD_LIBRARY_PATH`.
//!
//! The tests drive real domain plugins from `doin-plugins` (a dev-dependency), which links
//! libtorch through tch. doin-plugins re-exports libtorch's lib directory as
//! `DEP_DOIN_TORCH_LIBTORCH_LIB`, but Cargo hands that only to the build scripts of crates
//! that depend on it through `[dependencies]` (docs/setup.md), and this library does not.
//! So this script looks where torch-sys looks, as set up by `scripts/env.sh`:
//! `$LIBTORCH/lib`, or the `torch/lib` of the PyTorch in `$VIRTUAL_ENV` when
//! `LIBTORCH_USE_PYTORCH` is set. The library itself never links libtorch, and when nothing
//! is found nothing is added.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for var in [
        "DEP_DOIN_TORCH_LIBTORCH_LIB",
        "LIBTORCH",
        "LIBTORCH_USE_PYTORCH",
        "VIRTUAL_ENV",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let Some(lib_dir) = libtorch_lib_dir() else {
        return;
    };
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo::rustc-link-arg=-Wl,-rpath,{}", lib_dir.display());
    }
}

fn libtorch_lib_dir() -> Option<PathBuf> {
    if let Some(dir) = env::var_os("DEP_DOIN_TORCH_LIBTORCH_LIB") {
        return Some(PathBuf::from(dir));
    }
    if let Some(root) = env::var_os("LIBTORCH") {
        return Some(PathBuf::from(root).join("lib"));
    }
    env::var_os("LIBTORCH_USE_PYTORCH")?;
    let venv = PathBuf::from(env::var_os("VIRTUAL_ENV")?);
    // <venv>/lib/python3.X/site-packages/torch/lib
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(venv.join("lib"))
        .ok()?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path().join("site-packages/torch/lib"))
        .filter(|dir| dir.is_dir())
        .collect();
    candidates.sort();
    candidates.pop()
}
