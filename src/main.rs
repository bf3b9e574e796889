fn main() -> std::process::ExitCode {
    mtp::cli::main()
}
