//! The `tillrelay` binary: everything is in the library; see `cli`.

fn main() -> std::process::ExitCode {
    tillrelay::cli::main_with(std::env::args_os())
}
