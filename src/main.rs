//! The `slmforge` binary: a thin shell over [`slmforge::cli`].
fn main() -> std::process::ExitCode {
    slmforge::cli::main()
}
