//! Gives `custom-node` an rpath to libtorch, so it starts without `LD_LIBRARY_PATH` when the
//! build links doin-plugins' `torch` feature (a workspace build does). Link arguments never
//! cross package boundaries, so every binary crate repeats this (docs/setup.md).

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=DEP_DOIN_TORCH_LIBTORCH_LIB");
    if let Some(lib_dir) = std::env::var_os("DEP_DOIN_TORCH_LIBTORCH_LIB") {
        if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
            println!(
                "cargo::rustc-link-arg=-Wl,-rpath,{}",
                lib_dir.to_string_lossy()
            );
        }
    }
}
