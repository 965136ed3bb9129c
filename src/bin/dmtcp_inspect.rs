//! dmtcp_inspect: print a summary of checkpoint images (DMTCP's readdmtcp.sh).

use clap::Parser;
use dmtcp_engine::image::reader;
use dmtcp_rs::cli::{fail_rc, parse_args};
use std::io::Write;
use std::path::PathBuf;

const PROG: &str = "dmtcp_inspect";

#[derive(Parser, Debug)]
#[command(name = PROG, version, about = "Print a summary of checkpoint images")]
struct Args {
    /// One JSON object per image (one per line) instead of text
    #[arg(long)]
    json: bool,
    /// Also verify every page checksum (reads the whole image)
    #[arg(long)]
    verify: bool,
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
}

fn main() {
    let args: Args = parse_args(PROG);
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    // Every image is reported on even when an earlier one is unreadable; the exit code says
    // whether all were fine.
    for path in &args.images {
        let read = if args.verify { reader::verify_image(path) } else { reader::read_image_info(path) };
        let info = match read {
            Ok(info) => info,
            Err(e) => {
                let _ = out.flush();
                // ImageError's message starts with the file name.
                eprintln!("{PROG}: {e}");
                failed = true;
                continue;
            }
        };
        let name = path.display().to_string();
        let written = if args.json {
            writeln!(out, "{}", dmtcp_rs::inspect::to_json(&name, &info))
        } else {
            write!(out, "{}", dmtcp_rs::inspect::to_text(&name, &info))
        };
        if written.is_err() {
            // stdout closed (`dmtcp_inspect ... | head`): nobody is reading any more.
            std::process::exit(if failed { fail_rc() } else { 0 });
        }
    }
    let _ = out.flush();
    if failed {
        std::process::exit(fail_rc());
    }
}
