//! The `hotconf` binary: parses flags, the library does the work.

fn main() -> std::process::ExitCode {
    hotconf::cli::main()
}
