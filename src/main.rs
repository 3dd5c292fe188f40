//! The `slmforge` binary: a thin shell over [`slmforge::cli`].

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    slmforge::cli::main()
}
