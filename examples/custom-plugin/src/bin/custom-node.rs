//! `custom-node`: the stock DOIN node plus the `cubic_root` domain of this crate.
//!
//! Every subcommand and flag of `doin-node` works unchanged (`custom-node --help`);
//! `check-config` knows the extra domain too, because it checks against the same registry.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut registry = doin_plugins::builtin_registry();
    if let Err(err) = custom_plugin::register(&mut registry) {
        eprintln!(
            "error: cannot register the {} domain: {err}",
            custom_plugin::NAME
        );
        return ExitCode::FAILURE;
    }
    doin_node::cli::main_with_registry(registry)
}
