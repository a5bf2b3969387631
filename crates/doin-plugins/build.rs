//! Link-time glue between libtorch and every executable built from this crate.
//!
//! torch-sys (under tch) finds libtorch and reports its lib directory through its `links`
//! metadata as `DEP_TCH_LIBTORCH_LIB`, but it only adds a link *search* path: executables
//! linked against it would need `LD_LIBRARY_PATH` to start. This script, for this crate's
//! own test executables:
//!
//! * adds an rpath (`DT_RUNPATH`) to the libtorch lib directory, so they start with
//!   `LD_LIBRARY_PATH` unset;
//! * links `libtorch.so` with `--no-as-needed`, so that `libtorch_cuda.so` (a dependency of
//!   `libtorch.so` in CUDA builds) is loaded even though no symbol of it is referenced
//!   directly; otherwise `tch::Cuda::is_available()` is false even on a GPU machine;
//! * re-exports the directory as `DEP_DOIN_TORCH_LIBTORCH_LIB` (this package's `links` key
//!   is `doin_torch`) for the build scripts of crates that depend on this one, because
//!   link arguments from a build script never apply to other packages' executables.
//!
//! A binary crate that depends on doin-plugins copies `torch_link_args` below into its own
//! `build.rs` (see docs/setup.md, "Binaries of other crates").

use std::env;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib_dir) = env::var_os("DEP_TCH_LIBTORCH_LIB") else {
        // torch-sys reports nothing on Windows or with its `doc-only` feature.
        return;
    };
    let lib_dir = lib_dir.to_string_lossy().into_owned();
    println!("cargo::metadata=libtorch_lib={lib_dir}");
    for arg in torch_link_args(&lib_dir) {
        println!("cargo::rustc-link-arg={arg}");
    }
}

/// Linker arguments that make an executable find libtorch (and its CUDA part) at run time.
fn torch_link_args(lib_dir: &str) -> Vec<String> {
    match env::var("CARGO_CFG_TARGET_OS").as_deref() {
        Ok("linux") => vec![
            format!("-Wl,-rpath,{lib_dir}"),
            "-Wl,--no-as-needed".to_owned(),
            "-ltorch".to_owned(),
        ],
        Ok("macos") => vec![format!("-Wl,-rpath,{lib_dir}")],
        _ => Vec::new(),
    }
}
