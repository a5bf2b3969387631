//! `doin-node`: see `doin-node --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    doin_node::cli::main()
}
