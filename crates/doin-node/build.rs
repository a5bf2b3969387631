//! Gives the node's executables (the binary, tests, benches) an rpath to libtorch, so they
//! start without `LD_LIBRARY_PATH`. doin-plugins re-exports torch-sys' libtorch directory as
//! `DEP_DOIN_TORCH_LIBTORCH_LIB`; link arguments never cross package boundaries, so each
//! binary crate repeats this (see docs/setup.md).

use std::env;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=DEP_DOIN_TORCH_LIBTORCH_LIB");
    let Some(lib_dir) = env::var_os("DEP_DOIN_TORCH_LIBTORCH_LIB") else {
        return;
    };
    let lib_dir = lib_dir.to_string_lossy();
    if env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo::rustc-link-arg=-Wl,-rpath,{lib_dir}");
        println!("cargo::rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo::rustc-link-arg=-ltorch");
    }
}
