//! One training step of the emotion model (models/mini_xception.yaml): batch
//! 32, Keras' initial weights, forward in training mode, cross-entropy,
//! backward, L2 and Adam, on 1 and 2 threads.
//!
//! ```text
//! cargo bench -p mini-xception-benches --bench train_step
//! ```
//!
//! Criterion reports the median step time and images/s. The comparison with
//! PyTorch is `scripts/compare_pytorch.py`, which runs both in one session.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mini_xception::models::emotion::{MiniXception, MiniXceptionInput};
use mini_xception::runtime::{Isa, Tensor};
use mini_xception::train::keras_initial;
use mini_xception::train::{Trainer, TrainerOptions};
use std::hint::black_box;

const BATCH: usize = 32;

/// A batch of deterministic images with values in [-1, 1], and labels.
fn batch() -> (Vec<MiniXceptionInput>, Vec<usize>) {
    let inputs = (0..BATCH)
        .map(|image| {
            let mut input = Tensor::<64, 64, 1>::zeroed_boxed();
            for (i, value) in input.as_mut_slice().iter_mut().enumerate() {
                *value = (((i + 31 * image) * 7919) % 255) as f32 / 127.5 - 1.0;
            }
            *input
        })
        .collect();
    let labels = (0..BATCH).map(|image| image % 7).collect();
    (inputs, labels)
}

fn train_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("train_step_batch_32");
    group.throughput(Throughput::Elements(BATCH as u64));
    let (inputs, labels) = batch();
    for threads in [1, 2] {
        let (parameters, statistics) = keras_initial::<MiniXception>(1);
        let options = TrainerOptions {
            batch: BATCH,
            threads,
            ..TrainerOptions::default()
        };
        let mut trainer = Trainer::<MiniXception>::new(parameters, statistics, options)
            .expect("a trainer for batch 32");
        group.bench_function(
            BenchmarkId::new(
                "mini-xception 64x64",
                format!("{} {threads} threads", Isa::detect().name()),
            ),
            |b| b.iter(|| black_box(trainer.step(&inputs, &labels).expect("a step"))),
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = train_step
}
criterion_main!(benches);
