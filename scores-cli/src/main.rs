//! The `scores` command. Its subcommands (`serve`, `simulate`, `tail`, `record`, `replay`) are
//! specified in DESIGN.md and arrive with their issues; until then it says so and exits 2.

use std::process::ExitCode;

#[allow(clippy::print_stderr)]
fn main() -> ExitCode {
    eprintln!(
        "scores {}: no subcommand is implemented yet (serve, simulate, tail, record and replay \
         are being built; see README.md)",
        env!("CARGO_PKG_VERSION")
    );
    ExitCode::from(2)
}
