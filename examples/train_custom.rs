//! Compiles a model file of its own (`examples/models/small_emotion.yaml`:
//! other widths, input size and module count than the paper's), trains it on
//! FER2013 for an epoch, then loads the saved weights back and evaluates them
//! on PublicTest.
//!
//! ```text
//! cargo run --release -p mini-xception --example train_custom -- ../shared/data/fer2013/fer2013.csv.gz runs/small [faces]
//! ```
//!
//! The optional third argument trains on the first that many Training faces.

use mini_xception::evaluate::evaluate;
use mini_xception::fer2013;
use mini_xception::models::Classifier;
use mini_xception::runtime::Isa;
use mini_xception::train::{RunOptions, TrainSettings, on_epoch, train};
use std::path::PathBuf;

mini_xception::mini_xception!("examples/models/small_emotion.yaml");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(data), Some(out)) = (
        args.next().map(PathBuf::from),
        args.next().map(PathBuf::from),
    ) else {
        return Err("usage: train_custom FER2013.csv[.gz] OUT_DIR [faces]".into());
    };
    let limit = args
        .next()
        .map(|n| n.to_string_lossy().parse::<usize>())
        .transpose()?;
    println!("{}", SmallEmotion::summary());

    let settings = TrainSettings {
        epochs: 1,
        limit,
        ..TrainSettings::default()
    };
    let options = RunOptions {
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        isa: Isa::detect(),
        resume: false,
    };
    let mut report = on_epoch(|epoch| {
        println!(
            "epoch {}: training loss {:.4}, PublicTest {:.2}% ({:.1} s)",
            epoch.epoch,
            epoch.train_loss,
            100.0 * epoch.validation_accuracy,
            epoch.seconds
        );
    });
    let summary = train::<SmallEmotion>(&data, &out, &settings, &options, &mut report)?;

    // The saved weights, loaded back as any user of the model would.
    let weights = out.join("best.safetensors");
    let mut classifier = Classifier::<SmallEmotion>::load(&weights)?;
    let rows = fer2013::read(&data, Some("PublicTest"))?;
    let evaluation = evaluate(&mut classifier, &rows, || {})?;
    let correct: usize = (0..7).map(|c| evaluation.confusion[c][c]).sum();
    println!(
        "{} loaded back: {correct} of {} PublicTest faces correct ({:.2}%; training reported {:.2}%)",
        weights.display(),
        rows.len(),
        100.0 * correct as f64 / rows.len() as f64,
        100.0
            * summary
                .history
                .last()
                .map_or(0.0, |e| e.validation_accuracy)
    );
    Ok(())
}
