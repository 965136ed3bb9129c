//! What every command shares: DMTCP's failure exit code and one-line error reporting.

/// DMTCP's exit code for its own failures (bad command line, unreadable image, ...): 99, or
/// DMTCP_FAIL_RC when that is set to an integer.
pub fn fail_rc() -> i32 {
    std::env::var("DMTCP_FAIL_RC").ok().and_then(|v| v.trim().parse::<i32>().ok()).unwrap_or(99)
}

/// Print `prog: message` as one line on stderr and exit with the failure code.
pub fn die(prog: &str, message: impl std::fmt::Display) -> ! {
    eprintln!("{prog}: {message}");
    std::process::exit(fail_rc())
}

/// Parse command-line arguments with clap, but exit with DMTCP's failure code (not clap's 2)
/// on a bad command line; --help and --version still exit 0.
pub fn parse_args<T: clap::Parser>(prog: &str) -> T {
    match T::try_parse() {
        Ok(v) => v,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                std::process::exit(0);
            }
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid command line").trim_start_matches("error: ");
            die(prog, format!("{first} (try --help)"))
        }
    }
}
