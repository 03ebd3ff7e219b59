use clap::Parser;

/// Recognises this binary without running it (`limits_api::marker`): `virtiofs-sandbox
/// install` and the node exporter search a daemon path's bytes for it.
#[used]
static BUILD_MARKER: &str = concat!(
    "\0virtiofsd-ratelimit-build:version=",
    env!("CARGO_PKG_VERSION"),
    ";virtiofsd-ratelimit-build\0"
);

fn main() {
    let cli = virtiofsd::cli::Cli::parse();
    if cli.print_capabilities {
        println!("{}", virtiofsd::cli::CAPABILITIES);
        return;
    }
    let config = match cli.into_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("virtiofsd: error: {e}");
            std::process::exit(2);
        }
    };
    std::process::exit(virtiofsd::daemon::run(config));
}
