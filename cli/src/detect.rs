//! `mini-xception detect`: the Haar cascade alone, with its time.

use crate::args::{CliError, DetectArgs};
use mini_xception::detect::Cascade;
use mini_xception::preprocess::load_gray;
use serde_json::json;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// The arguments of `mini-xception detect`.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub detect: DetectArgs,
    /// Detect this many times per photo and report the median time.
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
    /// One JSON object per photo and line: path, boxes ([x, y, w, h]), ms_median.
    #[arg(long)]
    pub json: bool,
    /// The photos.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

/// Detects the faces of every photo; an unreadable one is reported and
/// skipped. Fails (exit code 1) when any photo failed.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let Args {
        detect,
        repeat,
        json,
        images,
    } = args;
    detect.set_threads()?;
    let cascade = detect.cascade_path()?;
    let options = &detect.detect_options();
    if repeat == 0 {
        return Err("--repeat must be at least 1".into());
    }
    let cascade = Cascade::from_xml_file(&cascade)?;
    let mut failed = 0;
    for path in &images {
        let gray = match load_gray(path) {
            Ok(gray) => gray,
            Err(error) => {
                eprintln!("mini-xception: {}: {error}", path.display());
                failed += 1;
                continue;
            }
        };
        let mut times = Vec::with_capacity(repeat);
        let mut boxes = Vec::new();
        for _ in 0..repeat {
            let start = Instant::now();
            boxes = cascade.detect(&gray, options)?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        if json {
            let boxes: Vec<[u32; 4]> = boxes
                .iter()
                .map(|b| [b.x, b.y, b.width, b.height])
                .collect();
            sayln!(
                "{}",
                json!({ "path": path.display().to_string(), "boxes": boxes, "ms_median": median })
            );
        } else {
            sayln!(
                "{}: {} faces in {median:.1} ms (median of {repeat})",
                path.display(),
                boxes.len()
            );
            for b in &boxes {
                sayln!("  [{} {} {} {}]", b.x, b.y, b.width, b.height);
            }
        }
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
