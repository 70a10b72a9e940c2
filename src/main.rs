use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = ocrd::cli::Cli::parse();
    match cli.run() {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the whole chain of causes on one line.
            eprintln!("ocrd: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
