use clap::Parser;

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
