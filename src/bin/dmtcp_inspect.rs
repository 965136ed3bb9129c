//! dmtcp_inspect: print a summary of checkpoint images (DMTCP's readdmtcp.sh).

use clap::Parser;
use dmtcp_engine::image::reader;
use dmtcp_rs::cli::{die, parse_args};
use std::path::PathBuf;

const PROG: &str = "dmtcp_inspect";

#[derive(Parser, Debug)]
#[command(name = PROG, version, about = "Print a summary of checkpoint images")]
struct Args {
    /// One JSON object per image instead of text
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
    for path in &args.images {
        let read = if args.verify { reader::verify_image(path) } else { reader::read_image_info(path) };
        let info = read.unwrap_or_else(|e| die(PROG, e));
        let name = path.display().to_string();
        if args.json {
            println!("{}", dmtcp_rs::inspect::to_json(&name, &info));
        } else {
            print!("{}", dmtcp_rs::inspect::to_text(&name, &info));
        }
    }
}
