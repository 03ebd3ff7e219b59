//! `virtiofs-sandbox`: start and supervise one virtiofsd per Kata sandbox (see
//! [`runtime_integration::cli`]).

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    std::process::exit(runtime_integration::cli::main_with(std::env::args_os()));
}
