//! Gives the node's executables (the binary, tests, benches) an rpath to libtorch, so they
//! start without `LD_LIBRARY_PATH`. doin-plugins re-exports torch-sys' libtorch directory as
//! `DEP_DOIN_TORCH_LIBTORCH_LIB`; link arguments never cross package boundaries, so each
//! binary crate repeats this (see docs/setup.md).

use std::env;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    // sqlx::migrate! embeds the migrations: a new file must rebuild the crate.
    println!("cargo::rerun-if-changed=migrations");
    println!("cargo::rerun-if-env-changed=DEP_DOIN_TORCH_LIBTORCH_LIB");
    let Some(lib_dir) = env::var_os("DEP_DOIN_TORCH_LIBTORCH_LIB") else {
        return;
    };
    let lib_dir = lib_dir.to_string_lossy();
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo::rustc-link-arg=-Wl,-rpath,{lib_dir}");
        // Unlike doin-plugins' tests, the node does not force-link libtorch (and with it the
        // CUDA runtime, ~300 MB resident): the linker keeps libtorch only when a linked
        // domain really uses it. The `cuda` feature forces it, so that CUDA is detected.
        if env::var_os("CARGO_FEATURE_CUDA").is_some() {
            println!("cargo::rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo::rustc-link-arg=-ltorch");
        }
    }
}
