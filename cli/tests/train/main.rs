//! Training runs on FER2013: the same seed gives the same bits with any
//! number of threads, a run killed mid-epoch and resumed ends where an
//! uninterrupted run ends, damaged checkpoints are refused whole, and a short
//! run learns. `parity.rs`: the trainer against Keras.
//!
//! One test binary for both: each would otherwise compile the trainer for the
//! small model of `tests/models/tiny_train.yaml` on its own, a long compile in
//! every clean build.

mod parity;
#[path = "../../../tests/support/mod.rs"]
mod support;

use mini_xception::models::paz::MiniXceptionPaz;
use mini_xception::runtime::train::TrainableModel;
use mini_xception::runtime::{Isa, flat};
use mini_xception::train::checkpoint::{
    self, CheckpointError, CheckpointHeader, EpochRecord, ScheduleState,
};
use mini_xception::train::data::{Faces, load_split};
use mini_xception::train::{Optimizer, Sgd, Trainer, TrainerOptions};
use mini_xception::train::{
    RunOptions, Schedule, TrainSettings, WeightAverage, keras_initial, on_epoch, recalibrate_faces,
    train_faces,
};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mini_xception::mini_xception!("../tests/models/tiny_train.yaml");

fn data() -> PathBuf {
    support::shared("data/fer2013/fer2013.csv.gz")
}

/// FER2013's Training and PublicTest faces at 48x48, read once for every
/// test of this file.
fn faces() -> &'static (Faces, Faces) {
    static FACES: OnceLock<(Faces, Faces)> = OnceLock::new();
    FACES.get_or_init(|| {
        (
            load_split(&data(), "Training", 7, [48, 48]).unwrap(),
            load_split(&data(), "PublicTest", 7, [48, 48]).unwrap(),
        )
    })
}

fn train_paz(
    out: &Path,
    settings: &TrainSettings,
    options: &RunOptions,
) -> mini_xception::train::RunSummary {
    let (training, validation) = faces();
    train_faces::<MiniXceptionPaz>(training, validation, out, settings, options, &mut ()).unwrap()
}

/// Trains like [`train_paz`], copying the checkpoint of every epoch to
/// `copies` as `EPOCH.checkpoint`; the history.
fn train_paz_keeping_checkpoints(
    out: &Path,
    settings: &TrainSettings,
    copies: &Path,
) -> Vec<EpochRecord> {
    let (training, validation) = faces();
    let mut history = Vec::new();
    train_faces::<MiniXceptionPaz>(
        training,
        validation,
        out,
        settings,
        &options(2),
        &mut on_epoch(|record| {
            let copy = copies.join(format!("{}.checkpoint", record.epoch));
            std::fs::copy(out.join("last.checkpoint"), copy).unwrap();
            history.push(record.clone());
        }),
    )
    .unwrap();
    history
}

/// A quick recipe on the 48x48 model, which needs no resize.
fn settings(limit: usize, epochs: usize) -> TrainSettings {
    TrainSettings {
        epochs,
        limit: Some(limit),
        seed: 7,
        ..TrainSettings::default()
    }
}

fn options(threads: usize) -> RunOptions {
    RunOptions {
        threads,
        isa: Isa::detect(),
        resume: false,
    }
}

/// The values of a checkpoint (parameters, statistics, Adam's moments),
/// without its header, which records wall times.
fn checkpoint_values(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    let header = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
    bytes[16 + header..bytes.len() - 32].to_vec()
}

/// history.csv without the wall-time column.
fn history_without_times(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            line.rsplit_once(',')
                .map_or(line, |(rest, _)| rest)
                .to_string()
        })
        .collect()
}

/// `train --isa` says the weights do not depend on the instruction set:
/// the kernels of every build make the same fused multiply-adds in the same
/// order (the AVX-512 build's own kernels included, `runtime/src/wide.rs`).
#[test]
fn the_same_seed_gives_the_same_bits_with_every_instruction_set_that_fuses() {
    let fused = [Isa::Avx512, Isa::Avx2];
    let runs: Vec<PathBuf> = fused
        .into_iter()
        .filter(|isa| isa.is_available())
        .map(|isa| {
            let out = tempfile::tempdir().unwrap().keep();
            let options = RunOptions { isa, ..options(2) };
            train_paz(&out, &settings(160, 1), &options);
            out
        })
        .collect();
    for other in runs.iter().skip(1) {
        assert!(
            checkpoint_values(&runs[0].join("last.checkpoint"))
                == checkpoint_values(&other.join("last.checkpoint")),
            "the checkpoints of AVX-512 and AVX2 differ"
        );
        assert_eq!(
            history_without_times(&runs[0].join("history.csv")),
            history_without_times(&other.join("history.csv"))
        );
    }
}

#[test]
fn the_same_seed_gives_the_same_bits_with_one_two_and_five_threads() {
    // Five: more threads than the cores of the machine the tests run on.
    let runs: Vec<PathBuf> = [1, 2, 5]
        .into_iter()
        .map(|threads| {
            let out = tempfile::tempdir().unwrap().keep();
            train_paz(&out, &settings(320, 1), &options(threads));
            out
        })
        .collect();
    let one = &runs[0];
    let values = checkpoint_values(&one.join("last.checkpoint"));
    assert!(!values.is_empty());
    for two in &runs[1..] {
        assert!(
            values == checkpoint_values(&two.join("last.checkpoint")),
            "the checkpoints differ"
        );
        assert_eq!(
            std::fs::read(one.join("best.safetensors")).unwrap(),
            std::fs::read(two.join("best.safetensors")).unwrap()
        );
        assert_eq!(
            history_without_times(&one.join("history.csv")),
            history_without_times(&two.join("history.csv"))
        );
    }
    // A different seed gives different weights: the comparison can fail.
    let other = tempfile::tempdir().unwrap();
    let other_settings = TrainSettings {
        seed: 8,
        ..settings(320, 1)
    };
    train_paz(other.path(), &other_settings, &options(2));
    assert!(values != checkpoint_values(&other.path().join("last.checkpoint")));
    for run in runs {
        let _ = std::fs::remove_dir_all(run);
    }
}

fn train_command(out: &Path, resume: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mini-xception"));
    command.args([
        "train",
        "--model",
        "paz",
        "--quiet",
        "--epochs",
        "2",
        "--limit",
        "480",
        "--seed",
        "3",
        "--threads",
        "2",
    ]);
    command.arg("--data").arg(data()).arg("--out").arg(out);
    if resume {
        command.arg("--resume");
    }
    command
}

/// Momentum is SGD's and lies in [0, 1): anything else is refused before
/// any data is read or any file written.
#[test]
fn out_of_range_optimizer_and_erasing_options_are_refused() {
    let out = tempfile::tempdir().unwrap();
    for (optimizer, momentum, expected) in [
        ("adam", "0.9", "--momentum is SGD's"),
        ("sgd", "1.5", "momentum must be in [0, 1), got 1.5"),
        ("nesterov", "-0.1", "momentum must be in [0, 1), got -0.1"),
    ] {
        let output = train_command(out.path(), false)
            .args(["--optimizer", optimizer, &format!("--momentum={momentum}")])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(expected),
            "{stderr}"
        );
    }
    let output = train_command(out.path(), false)
        .arg("--erase=1.5")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success()
            && stderr.contains("erase must be a probability, in [0, 1], got 1.5"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

/// `recalibrate` (the library's [`recalibrate_faces`] and the command) gives
/// a finished run's weights the statistics that `train --recalibrate-bn`
/// measures: the file and the figures of a one-epoch, learning-rate-0
/// continuation that recalibrates, bit for bit, without its training epoch.
/// Before, the figures are the run's last epoch's. A damaged checkpoint is
/// refused with its name, and nothing is written.
#[test]
fn recalibrate_gives_a_run_the_statistics_train_would_measure() {
    let (training, validation) = faces();
    let run = tempfile::tempdir().unwrap();
    let summary = train_paz(run.path(), &settings(160, 2), &options(2));
    let last = run.path().join("last.checkpoint");
    let out = tempfile::tempdir().unwrap();
    let recalibrated = out.path().join("recalibrated.safetensors");
    let result = recalibrate_faces::<MiniXceptionPaz>(
        &last,
        training,
        validation,
        &recalibrated,
        2,
        Isa::detect(),
    )
    .unwrap();
    let trained = &summary.history[1];
    assert_eq!(result.before.loss, trained.validation_loss);
    assert_eq!(result.before.accuracy, trained.validation_accuracy);
    assert_ne!(result.after.loss, result.before.loss);

    let continued = tempfile::tempdir().unwrap();
    let frozen = TrainSettings {
        init: Some(last.clone()),
        schedule: Schedule::Constant,
        learning_rate: 0.0,
        recalibrate: true,
        ..settings(160, 1)
    };
    let record = &train_paz(continued.path(), &frozen, &options(2)).history[0];
    assert_eq!(result.after.loss, record.validation_loss);
    assert_eq!(result.after.accuracy, record.validation_accuracy);
    let written = std::fs::read(&recalibrated).unwrap();
    assert!(written == std::fs::read(continued.path().join("best.safetensors")).unwrap());

    let command = |checkpoint: &Path, out: &Path| {
        Command::new(env!("CARGO_BIN_EXE_mini-xception"))
            .args(["recalibrate", "--threads", "1", "--data"])
            .arg(data())
            .arg("--out")
            .arg(out)
            .arg(checkpoint)
            .output()
            .unwrap()
    };
    let by_command = out.path().join("by-command.safetensors");
    let output = command(&last, &by_command);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "recalibrated  PublicTest loss {:.4}",
            result.after.loss
        )),
        "{stdout}"
    );
    assert!(std::fs::read(&by_command).unwrap() == written);

    let truncated = out.path().join("truncated.checkpoint");
    let bytes = std::fs::read(&last).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let refused = out.path().join("refused.safetensors");
    let output = command(&truncated, &refused);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("truncated.checkpoint: damaged or truncated"),
        "{stderr}"
    );
    assert!(!refused.exists());
}

#[test]
fn a_run_killed_mid_epoch_resumes_to_the_same_bits() {
    // With SGD: its velocities must come back from the checkpoint too
    // (Adam's moments do in the averaging test below).
    let train_command = |out: &Path, resume: bool| {
        let mut command = train_command(out, resume);
        command.args(["--optimizer", "nesterov"]);
        command
    };
    let whole = tempfile::tempdir().unwrap();
    let status = train_command(whole.path(), false).status().unwrap();
    assert!(status.success());
    // SGD ran: velocities in the first array of the optimizer's state, zeros in the second.
    let values = checkpoint_values(&whole.path().join("last.checkpoint"));
    let parameters = std::mem::size_of::<<MiniXceptionPaz as TrainableModel>::Parameters>();
    let statistics = std::mem::size_of::<<MiniXceptionPaz as TrainableModel>::Statistics>();
    let (first, second) = values[parameters + statistics..].split_at(parameters);
    assert!(first.iter().any(|&b| b != 0) && second.iter().all(|&b| b == 0));

    let interrupted = tempfile::tempdir().unwrap();
    let mut child = train_command(interrupted.path(), false)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first epoch's checkpoint, then kill the run (SIGKILL)
    // while the second epoch trains.
    let history = interrupted.path().join("history.csv");
    let started = Instant::now();
    while !history.exists() && started.elapsed() < Duration::from_secs(300) {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    let rows = std::fs::read_to_string(&history).unwrap().lines().count() - 1;
    assert_eq!(
        rows, 1,
        "the run was killed after {rows} epochs, not in its second"
    );

    let status = train_command(interrupted.path(), true).status().unwrap();
    assert!(status.success());
    assert!(
        checkpoint_values(&whole.path().join("last.checkpoint"))
            == checkpoint_values(&interrupted.path().join("last.checkpoint")),
        "the resumed run ends elsewhere than the uninterrupted one"
    );
    assert_eq!(
        std::fs::read(whole.path().join("best.safetensors")).unwrap(),
        std::fs::read(interrupted.path().join("best.safetensors")).unwrap()
    );
    assert_eq!(
        history_without_times(&whole.path().join("history.csv")),
        history_without_times(&interrupted.path().join("history.csv"))
    );
}

#[test]
fn damaged_checkpoints_are_refused_whole_and_leave_the_trainer_as_it_was() {
    let (parameters, statistics) = keras_initial::<TinyTrain>(1);
    let options = TrainerOptions {
        batch: 2,
        threads: 1,
        ..TrainerOptions::default()
    };
    let mut trainer = Trainer::<TinyTrain>::new(parameters, statistics, options).unwrap();
    let header = CheckpointHeader {
        model: "TinyTrain".into(),
        sizes: [
            std::mem::size_of::<TinyTrainParameters>() / 4,
            std::mem::size_of::<TinyTrainStatistics>() / 4,
        ],
        epochs_done: 1,
        steps: 5,
        schedule: ScheduleState {
            learning_rate: 1e-3,
            best_validation_loss: Some(1.5),
            plateau_wait: 0,
            epochs_since_best: 0,
        },
        history: Vec::new(),
        settings: serde_json::json!({"seed": 1}),
        averaged: 0,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("last.checkpoint");
    checkpoint::save(&path, &header, &trainer).unwrap();
    let good = std::fs::read(&path).unwrap();

    // A good file restores everything, the header included.
    let (other_parameters, other_statistics) = keras_initial::<TinyTrain>(2);
    let mut other = Trainer::<TinyTrain>::new(other_parameters, other_statistics, options).unwrap();
    assert_eq!(checkpoint::load(&path, &mut other).unwrap(), header);
    assert_eq!(flat(other.parameters()), flat(trainer.parameters()));
    assert_eq!(other.optimizer_state().steps, 5);

    let damaged = dir.path().join("damaged.checkpoint");
    let before = flat(trainer.parameters()).to_vec();
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), Vec::new()),
        ("truncated to its header".into(), good[..40].to_vec()),
        (
            "truncated by one byte".into(),
            good[..good.len() - 1].to_vec(),
        ),
    ];
    for position in [0, 9, 20, good.len() / 2, good.len() - 1] {
        let mut flipped = good.clone();
        flipped[position] ^= 0x40;
        cases.push((format!("byte {position} flipped"), flipped));
    }
    // NaN in the last parameter, or a negative second moment (Adam divides
    // by its square root), under a checksum that matches: checked values,
    // not only checked bytes.
    let header_end = 16 + u64::from_le_bytes(good[8..16].try_into().unwrap()) as usize;
    let parameters = std::mem::size_of::<TinyTrainParameters>();
    let statistics = std::mem::size_of::<TinyTrainStatistics>();
    for (what, at, value) in [
        ("a NaN parameter", header_end + parameters - 4, f32::NAN),
        (
            "a negative second moment",
            header_end + 2 * parameters + statistics,
            -1.0,
        ),
    ] {
        let mut bad = good.clone();
        bad[at..at + 4].copy_from_slice(&value.to_le_bytes());
        let content = bad.len() - 32;
        let digest = sha2::Sha256::digest(&bad[..content]);
        bad[content..].copy_from_slice(&digest);
        cases.push((what.into(), bad));
    }
    for (what, bytes) in cases {
        std::fs::write(&damaged, &bytes).unwrap();
        let error = checkpoint::load(&damaged, &mut trainer).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with(&damaged.display().to_string()),
            "{what}: {message}"
        );
        assert!(
            matches!(
                error,
                CheckpointError::Damaged { .. } | CheckpointError::NotACheckpoint { .. }
            ),
            "{what}: {message}"
        );
        assert_eq!(
            flat(trainer.parameters()),
            before.as_slice(),
            "{what}: the trainer changed"
        );
    }
    // A checkpoint of another model is refused by name.
    let mut paz = Trainer::<MiniXceptionPaz>::new(
        keras_initial::<MiniXceptionPaz>(1).0,
        keras_initial::<MiniXceptionPaz>(1).1,
        TrainerOptions {
            batch: 1,
            threads: 1,
            ..TrainerOptions::default()
        },
    )
    .unwrap();
    let error = checkpoint::load(&path, &mut paz).unwrap_err().to_string();
    assert!(
        error.contains("`TinyTrain`, not `MiniXceptionPaz`"),
        "{error}"
    );
    // A checkpoint with an average of weights restores it too; one whose
    // header counts an average its values lack is refused.
    let mut average = WeightAverage::<TinyTrain>::new().unwrap();
    average.add(trainer.parameters());
    average
        .statistics
        .clone_from(&Box::new(*trainer.statistics()));
    let averaged = dir.path().join("averaged.checkpoint");
    checkpoint::save_averaged(&averaged, &header, &trainer, Some(&average)).unwrap();
    let (restored, restored_average) = checkpoint::load_averaged(&averaged, &mut other).unwrap();
    let restored_average = restored_average.expect("the average");
    assert_eq!((restored.averaged, restored_average.count), (1, 1));
    assert_eq!(
        flat(&*restored_average.parameters),
        flat(trainer.parameters())
    );
    let mut cut = std::fs::read(&averaged).unwrap();
    cut.truncate(cut.len() - 32 - parameters - statistics);
    let digest = sha2::Sha256::digest(&cut);
    cut.extend_from_slice(&digest);
    std::fs::write(&damaged, &cut).unwrap();
    let error = checkpoint::load(&damaged, &mut trainer)
        .unwrap_err()
        .to_string();
    assert!(error.contains("with an average of weights"), "{error}");
    assert_eq!(flat(trainer.parameters()), before.as_slice());
    // A write that died before its rename leaves the checkpoint untouched.
    std::fs::write(dir.path().join("last.checkpoint.tmp"), &good[..100]).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), good);
    assert!(checkpoint::load(&path, &mut other).is_ok());
}

#[test]
fn a_short_run_learns() {
    // 8,192 faces for 3 epochs on the 48x48 model, without augmentation.
    let out = tempfile::tempdir().unwrap();
    let settings = TrainSettings {
        augmentation: None,
        schedule: Schedule::Plateau {
            patience: 12,
            factor: 0.1,
        },
        ..settings(8192, 3)
    };
    let summary = train_paz(out.path(), &settings, &options(2));
    let history = &summary.history;
    assert_eq!(history.len(), 3);
    let (first, last) = (&history[0], &history[2]);
    println!("{history:#?}");
    // The run is the same bits on every machine with the same instruction
    // set and any number of threads. On AVX2 it gave a training loss of 3.74,
    // 2.20 then 1.84, and 11.0%, 26.2% then 37.1% on PublicTest: the moving
    // statistics of the batch norms lag the weights in the first epochs, so
    // PublicTest accuracy is a poor and jumpy measure before the third (a
    // change that only reorders sums moves the second epoch's by points). The
    // bounds leave room for another instruction set's rounding.
    assert!(
        last.train_loss < first.train_loss - 1.0,
        "training loss {} -> {}",
        first.train_loss,
        last.train_loss
    );
    // The largest class, happy, is 895 of the 3,589 PublicTest faces (24.9%).
    assert!(
        last.validation_accuracy > 0.31,
        "PublicTest accuracy {}",
        last.validation_accuracy
    );
    assert!(
        last.validation_loss < first.validation_loss,
        "PublicTest loss {} -> {}",
        first.validation_loss,
        last.validation_loss
    );
    assert!(out.path().join("best.safetensors").exists());
}

/// A teacher that all but always says `fear` (class 2): Keras' initial
/// weights with a head bias of 10 on that class.
fn fearful_teacher(directory: &Path) -> PathBuf {
    use mini_xception::runtime::ParameterKind;
    use mini_xception::runtime::flat_mut;
    use mini_xception::runtime::train::{TrainableModel, fold};
    let (mut parameters, statistics) = keras_initial::<MiniXceptionPaz>(3);
    let bias = MiniXceptionPaz::TENSORS
        .iter()
        .find(|t| t.layer == "head" && t.kind == ParameterKind::Bias)
        .unwrap();
    bias.values_mut(flat_mut(&mut *parameters)).unwrap()[2] = 10.0;
    let model = fold::<MiniXceptionPaz>(&parameters, &statistics, Isa::detect()).unwrap();
    let path = directory.join("teacher.safetensors");
    mini_xception::native::save(
        mini_xception::runtime::InferenceModel::model_weights(&model),
        "MiniXceptionPaz",
        &path,
    )
    .unwrap();
    path
}

/// Distillation: with no weight on the teacher a run is the plain run, bit
/// for bit; with all the weight on a teacher that says `fear` to every face,
/// the student learns to say it too, which the labels alone never teach.
/// The same with consistent teaching.
/// A teacher file changed after the run began is refused on resuming.
#[test]
fn a_distilled_run_follows_its_teacher() {
    let directory = tempfile::tempdir().unwrap();
    let teacher = fearful_teacher(directory.path());
    let recipe = |weight: f32| TrainSettings {
        learning_rate: 1e-2,
        teachers: Some(
            mini_xception::train::Teachers::from_files(vec![teacher.clone()], weight, 1.0).unwrap(),
        ),
        ..settings(2048, 1)
    };
    let fear_share = |summary: &mini_xception::train::RunSummary| {
        let fear: usize = summary.best_confusion.iter().map(|row| row[2]).sum();
        let all: usize = summary.best_confusion.iter().flatten().sum();
        fear as f64 / all as f64
    };

    let plain = directory.path().join("plain");
    let plain_summary = train_paz(
        &plain,
        &TrainSettings {
            learning_rate: 1e-2,
            ..settings(2048, 1)
        },
        &options(2),
    );
    let unweighted = directory.path().join("unweighted");
    train_paz(&unweighted, &recipe(0.0), &options(2));
    assert!(
        checkpoint_values(&plain.join("last.checkpoint"))
            == checkpoint_values(&unweighted.join("last.checkpoint")),
        "a teacher of weight 0 changed the run"
    );

    let distilled = directory.path().join("distilled");
    let distilled_settings = recipe(1.0);
    let distilled_summary = train_paz(&distilled, &distilled_settings, &options(2));
    let (before, after) = (fear_share(&plain_summary), fear_share(&distilled_summary));
    println!("share of PublicTest faces called fear: plain {before:.3}, distilled {after:.3}");
    assert!(after > 0.9, "distilled: {after}");
    assert!(before < 0.5, "plain: {before}");

    // Consistent teaching, where the teacher sees each augmented image as
    // the student does: the same pull toward fear, from other targets than
    // the fixed ones (so other bits); with no weight, the plain run's bits.
    let consistent_recipe = |weight: f32| {
        let fixed = recipe(weight);
        TrainSettings {
            teachers: fixed.teachers.map(|t| mini_xception::train::Teachers {
                consistent: true,
                ..t
            }),
            ..fixed
        }
    };
    let consistent_unweighted = directory.path().join("consistent-unweighted");
    train_paz(&consistent_unweighted, &consistent_recipe(0.0), &options(2));
    assert!(
        checkpoint_values(&plain.join("last.checkpoint"))
            == checkpoint_values(&consistent_unweighted.join("last.checkpoint")),
        "a consistent teacher of weight 0 changed the run"
    );

    let consistent = directory.path().join("consistent");
    let consistent_summary = train_paz(&consistent, &consistent_recipe(1.0), &options(2));
    let train_loss = |summary: &mini_xception::train::RunSummary| summary.history[0].train_loss;
    println!(
        "training loss: plain {:.3}, distilled {:.3}, consistent {:.3}",
        train_loss(&plain_summary),
        train_loss(&distilled_summary),
        train_loss(&consistent_summary)
    );
    // One epoch at this rate is chaotic in inference mode (the moving
    // statistics lag), so the pull shows in the training loss: the teacher's
    // cross-entropy falls as with fixed targets (1.15 and 1.10 when written),
    // far below the labels' (4.26).
    let (plain_loss, fixed_loss, consistent_loss) = (
        train_loss(&plain_summary),
        train_loss(&distilled_summary),
        train_loss(&consistent_summary),
    );
    assert!(consistent_loss < 0.5 * plain_loss);
    assert!((consistent_loss - fixed_loss).abs() < 0.25 * fixed_loss);
    assert!(
        checkpoint_values(&consistent.join("last.checkpoint"))
            != checkpoint_values(&distilled.join("last.checkpoint"))
    );
    // The teacher changes: resuming (here: the finished run) is refused.
    std::fs::write(&teacher, b"another teacher").unwrap();
    let (training, validation) = faces();
    let resumed = train_faces::<MiniXceptionPaz>(
        training,
        validation,
        &distilled,
        &distilled_settings,
        &RunOptions {
            resume: true,
            ..options(2)
        },
        &mut (),
    );
    let error = resumed.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        error.contains("teacher.safetensors: the teacher has changed since the run began"),
        "{error}"
    );
}

/// `l2_scale` multiplies the model file's L2 factors: the penalty in a
/// step's loss is twice the file's at 2 and none at 0, and the weights then
/// move differently.
#[test]
fn the_l2_scale_multiplies_the_penalty() {
    let inputs = tiny_inputs();
    let step = |scale: f32| {
        let (parameters, statistics) = keras_initial::<TinyTrain>(4);
        let options = TrainerOptions {
            batch: 2,
            threads: 1,
            l2_scale: scale,
            ..TrainerOptions::default()
        };
        let mut trainer = Trainer::<TinyTrain>::new(parameters, statistics, options).unwrap();
        let report = trainer.step(&inputs, &[0, 1]).unwrap();
        (
            report.loss - report.data_loss,
            flat(trainer.parameters()).to_vec(),
        )
    };
    let (file, file_weights) = step(1.0);
    let (double, double_weights) = step(2.0);
    let (none, _) = step(0.0);
    assert!(file > 0.0);
    assert!(
        (double - 2.0 * file).abs() < 1e-9 * file,
        "{double} vs 2 x {file}"
    );
    assert_eq!(none, 0.0);
    assert_ne!(file_weights, double_weights);
}

/// Two fixed images for the small model of `tests/models/tiny_train.yaml`.
fn tiny_inputs() -> Vec<TinyTrainInput> {
    (0..2)
        .map(|i| {
            let mut input: TinyTrainInput = mini_xception::runtime::bytemuck::Zeroable::zeroed();
            for (j, v) in mini_xception::runtime::flat_mut(&mut input)
                .iter_mut()
                .enumerate()
            {
                *v = ((i * 7 + j * 13) % 17) as f32 / 8.0 - 1.0;
            }
            input
        })
        .collect()
}

/// A trainer stepping with SGD moves every weight as SGD does with the
/// step's gradients, keeps the velocities in the first array of its state
/// and leaves the second at zero; Adam's steps from the same start differ.
#[test]
fn a_trainer_steps_with_nesterov_sgd() {
    let inputs = tiny_inputs();
    let sgd = Sgd {
        learning_rate: 0.05,
        ..Sgd::default()
    };
    let trainer = |optimizer: Optimizer| {
        let (parameters, statistics) = keras_initial::<TinyTrain>(4);
        let options = TrainerOptions {
            batch: 2,
            threads: 1,
            optimizer,
            ..TrainerOptions::default()
        };
        Trainer::<TinyTrain>::new(parameters, statistics, options).unwrap()
    };
    let mut trained = trainer(Optimizer::Sgd(sgd));
    let mut expected = flat(trained.parameters()).to_vec();
    let mut velocity = vec![0.0f32; expected.len()];
    for labels in [[0, 1], [1, 0]] {
        trained.step(&inputs, &labels).unwrap();
        sgd.update(&mut expected, flat(trained.gradients()), &mut velocity);
        assert_eq!(flat(trained.parameters()), &expected[..]);
        let state = trained.optimizer_state();
        assert_eq!(flat(state.first_moments), &velocity[..]);
        assert!(flat(state.second_moments).iter().all(|&v| v == 0.0));
    }
    assert!(velocity.iter().any(|&v| v != 0.0));
    let mut adam = trainer(Optimizer::default());
    for labels in [[0, 1], [1, 0]] {
        adam.step(&inputs, &labels).unwrap();
    }
    assert_ne!(flat(adam.parameters()), &expected[..]);
}

/// A trainer of the 48x48 model at batch 32, to load checkpoints into.
fn paz_trainer() -> Trainer<MiniXceptionPaz> {
    let (parameters, statistics) = keras_initial::<MiniXceptionPaz>(1);
    let options = TrainerOptions {
        batch: 32,
        threads: 2,
        isa: Isa::detect(),
        ..TrainerOptions::default()
    };
    Trainer::new(parameters, statistics, options).unwrap()
}

/// Stochastic weight averaging: the average is the mean of the epochs'
/// weights, its statistics are measured for it (the mean of its batches'
/// statistics over the training faces), it is what the run evaluates, and a
/// run resumed from a checkpoint mid-average ends with the same bits as one
/// that was not stopped.
#[test]
fn averaged_weights_are_the_epochs_mean_with_their_own_statistics_and_resume_exactly() {
    let settings = TrainSettings {
        schedule: Schedule::Constant,
        average_from: Some(2),
        ..settings(160, 3)
    };
    let (training, validation) = faces();
    let whole = tempfile::tempdir().unwrap();
    let copies = tempfile::tempdir().unwrap();
    let history = train_paz_keeping_checkpoints(whole.path(), &settings, copies.path());

    let load = |epoch: usize| {
        let mut trainer = paz_trainer();
        let path = copies.path().join(format!("{epoch}.checkpoint"));
        let (header, average) = checkpoint::load_averaged(&path, &mut trainer).unwrap();
        (trainer, header, average)
    };
    let (first, header, average) = load(1);
    assert!(average.is_none() && header.averaged == 0);
    let (second, header, average) = load(2);
    let average = average.expect("epoch 2 starts the average");
    assert_eq!((header.averaged, average.count), (1, 1));
    assert_eq!(flat(&*average.parameters), flat(second.parameters()));
    let (mut third, header, average) = load(3);
    let mut average = average.expect("an average");
    assert_eq!((header.averaged, average.count), (2, 2));
    let largest = flat(third.parameters())
        .iter()
        .fold(0.0f32, |m, v| m.max(v.abs()));
    for ((&mean, &a), &b) in flat(&*average.parameters)
        .iter()
        .zip(flat(second.parameters()))
        .zip(flat(third.parameters()))
    {
        let expected = (a as f64 + b as f64) / 2.0;
        assert!((mean as f64 - expected).abs() <= 1e-6 * largest as f64);
    }
    // The weights moved between epochs, so the mean is neither of them.
    assert!(flat(&*average.parameters) != flat(second.parameters()));
    assert!(flat(first.parameters()) != flat(second.parameters()));

    // The statistics, measured independently: each batch's own (momentum
    // 0 keeps nothing of what was there), averaged in f64.
    let mut measuring = paz_trainer();
    measuring.state_mut().0.clone_from(&*average.parameters);
    let mut inputs = mini_xception::runtime::train::zeroed_batch(32);
    let batches = 160 / 32;
    let mut sums = vec![0.0f64; flat(third.statistics()).len()];
    for k in 0..batches {
        for (i, input) in inputs.iter_mut().enumerate() {
            mini_xception::train::augment::plain_into(
                training.face(k * 32 + i),
                mini_xception::runtime::flat_mut(input),
            );
        }
        measuring.update_statistics(&inputs, 0.0).unwrap();
        for (sum, &value) in sums.iter_mut().zip(flat(measuring.statistics())) {
            *sum += value as f64;
        }
    }
    let mut differs_from_trained = false;
    for ((&measured, sum), &trained) in flat(&*average.statistics)
        .iter()
        .zip(&sums)
        .zip(flat(third.statistics()))
    {
        let expected = sum / batches as f64;
        assert!(
            (measured as f64 - expected).abs() <= 1e-4 * expected.abs() + 1e-6,
            "{measured} against {expected}"
        );
        differs_from_trained |= (measured - trained).abs() > 1e-3 * trained.abs().max(1e-3);
    }
    assert!(
        differs_from_trained,
        "the average kept the trained statistics"
    );

    // From epoch 2 on, the history's validation figures are the average's.
    average.swap_into(&mut third);
    let evaluation =
        mini_xception::train::evaluate::<MiniXceptionPaz>(&third, validation, Isa::detect())
            .unwrap();
    assert_eq!(evaluation.loss, history[2].validation_loss);
    assert_eq!(evaluation.accuracy, history[2].validation_accuracy);

    // Resumed after epoch 2, the run ends with the same bits, average included.
    let resumed = tempfile::tempdir().unwrap();
    std::fs::copy(
        copies.path().join("2.checkpoint"),
        resumed.path().join("last.checkpoint"),
    )
    .unwrap();
    let resume = RunOptions {
        resume: true,
        ..options(2)
    };
    train_faces::<MiniXceptionPaz>(
        training,
        validation,
        resumed.path(),
        &settings,
        &resume,
        &mut (),
    )
    .unwrap();
    assert!(
        checkpoint_values(&whole.path().join("last.checkpoint"))
            == checkpoint_values(&resumed.path().join("last.checkpoint")),
        "the resumed run's average differs"
    );
    assert_eq!(
        history_without_times(&whole.path().join("history.csv")),
        history_without_times(&resumed.path().join("history.csv"))
    );
}

/// `--init` takes another run's checkpoint: at a learning rate of 0 the new
/// run keeps its weights exactly.
#[test]
fn a_run_starts_from_another_runs_checkpoint() {
    let source = tempfile::tempdir().unwrap();
    train_paz(source.path(), &settings(160, 1), &options(2));
    let source_checkpoint = source.path().join("last.checkpoint");
    let continued = tempfile::tempdir().unwrap();
    let frozen = TrainSettings {
        init: Some(source_checkpoint.clone()),
        schedule: Schedule::Constant,
        learning_rate: 0.0,
        seed: 9,
        ..settings(160, 1)
    };
    train_paz(continued.path(), &frozen, &options(2));
    let mut from = paz_trainer();
    checkpoint::load(&source_checkpoint, &mut from).unwrap();
    let mut to = paz_trainer();
    checkpoint::load(&continued.path().join("last.checkpoint"), &mut to).unwrap();
    assert_eq!(flat(to.parameters()), flat(from.parameters()));
    // Not the initialisation of either seed: the weights came from the file.
    assert!(flat(&*keras_initial::<MiniXceptionPaz>(9).0) != flat(to.parameters()));
    assert!(flat(&*keras_initial::<MiniXceptionPaz>(7).0) != flat(to.parameters()));
}

/// Recalibration (`recalibrate`, `train --recalibrate-bn`): training is the
/// same as without it, bit for bit, but each epoch is evaluated, and kept,
/// with the epoch's weights and batch-norm statistics measured afresh on the
/// unaugmented training faces.
#[test]
fn recalibrated_runs_train_alike_and_evaluate_with_statistics_of_unaugmented_faces() {
    let plain_settings = settings(160, 2);
    let recalibrating = TrainSettings {
        recalibrate: true,
        ..plain_settings.clone()
    };
    let (training, validation) = faces();
    let plain = tempfile::tempdir().unwrap();
    let plain_summary = train_paz(plain.path(), &plain_settings, &options(2));
    let recalibrated = tempfile::tempdir().unwrap();
    let copies = tempfile::tempdir().unwrap();
    let history = train_paz_keeping_checkpoints(recalibrated.path(), &recalibrating, copies.path());
    // Training kept its own statistics: the same weights, statistics and
    // optimizer state as the plain run's, and the same training figures.
    assert!(
        checkpoint_values(&plain.path().join("last.checkpoint"))
            == checkpoint_values(&recalibrated.path().join("last.checkpoint"))
    );
    for (plain, recalibrated) in plain_summary.history.iter().zip(&history) {
        assert_eq!(plain.train_loss, recalibrated.train_loss);
        // The evaluation is another model's.
        assert_ne!(plain.validation_loss, recalibrated.validation_loss);
    }
    // Each epoch's figures are its weights' with statistics measured on the
    // run's training faces.
    let trained_on = training.first(160);
    for (epoch, record) in history.iter().enumerate() {
        let mut trainer = paz_trainer();
        let path = copies.path().join(format!("{}.checkpoint", epoch + 1));
        checkpoint::load(&path, &mut trainer).unwrap();
        let mut measured = WeightAverage::<MiniXceptionPaz>::new().unwrap();
        measured.add(trainer.parameters());
        measured
            .measure_statistics(&mut trainer, &trained_on)
            .unwrap();
        measured.swap_into(&mut trainer);
        let evaluation =
            mini_xception::train::evaluate::<MiniXceptionPaz>(&trainer, validation, Isa::detect())
                .unwrap();
        assert_eq!(
            evaluation.loss,
            record.validation_loss,
            "epoch {}",
            epoch + 1
        );
        assert_eq!(evaluation.accuracy, record.validation_accuracy);
    }
}
