//! The `image-updater` command. All behaviour lives in the library; this binary parses
//! arguments, calls it, and turns outcomes into output and exit codes.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
