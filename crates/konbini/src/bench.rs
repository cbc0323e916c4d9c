use clap::Args;
#[derive(Args)]
pub struct BenchArgs {}
pub fn run(_a: BenchArgs, _u: &str) -> Result<std::process::ExitCode, String> { Err("todo".into()) }
