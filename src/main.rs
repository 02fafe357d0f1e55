use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(tenantctl::cli::main_with_args(std::env::args_os()))
}
