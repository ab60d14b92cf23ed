//! One-image latency and batch throughput of the compiled models, beside
//! tract-onnx running the ONNX export of the same emotion model, in one run.
//!
//! ```text
//! cargo bench -p mini-xception-benches
//! ```
//!
//! Needs `../shared/models/mini_xception_fer2013.onnx` for the tract rows.
//! Criterion prints medians; compare engines within one run only, as the
//! machine is shared.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mini_xception::bench::SyntheticWeights;
use mini_xception::runtime::Isa;
use std::hint::black_box;
use tract_onnx::prelude::*;

mini_xception::mini_xception!("../models/mini_xception.yaml");
mini_xception::mini_xception!("../tests/models/emotion_48.yaml");

const BATCH: usize = 64;

fn input<const H: usize, const W: usize>() -> Box<mini_xception::runtime::Tensor<H, W, 1>> {
    let mut input = mini_xception::runtime::Tensor::<H, W, 1>::zeroed_boxed();
    for (i, value) in input.as_mut_slice().iter_mut().enumerate() {
        *value = ((i * 7919) % 255) as f32 / 127.5 - 1.0;
    }
    input
}

type TractPlan = std::sync::Arc<TypedSimplePlan>;

/// The ONNX export in tract, optimised, for batches of `batch`.
fn tract_model(batch: usize) -> Option<TractPlan> {
    let path = mini_xception_testdata::shared("models/mini_xception_fer2013.onnx");
    let model = tract_onnx::onnx()
        .model_for_path(path)
        .ok()?
        .with_input_fact(0, f32::fact([batch, 64, 64, 1]).into())
        .ok()?
        .into_optimized()
        .ok()?
        .into_runnable()
        .ok()?;
    Some(model)
}

fn latency(c: &mut Criterion) {
    let mut group = c.benchmark_group("latency_1_image_1_thread");
    let weights = MiniXceptionWeights::from_source(&mut SyntheticWeights::new(1))
        .expect("seeded weights fit in memory");
    let mut model = MiniXception::new(weights);
    let x = input::<64, 64>();
    for isa in Isa::ALL.into_iter().filter(|isa| isa.is_available()) {
        model = model.with_isa(isa);
        let mut scratch = MiniXceptionScratch::new();
        group.bench_function(BenchmarkId::new("mini-xception 64x64", isa.name()), |b| {
            b.iter(|| black_box(model.forward(black_box(&x), &mut scratch)))
        });
    }
    let model48 = MiniXception48::from_source(&mut SyntheticWeights::new(1))
        .expect("seeded weights fit in memory");
    let x48 = input::<48, 48>();
    let mut scratch48 = MiniXception48Scratch::new();
    group.bench_function(
        BenchmarkId::new("mini-xception 48x48", Isa::detect().name()),
        |b| b.iter(|| black_box(model48.forward(black_box(&x48), &mut scratch48))),
    );
    if let Some(tract) = tract_model(1) {
        let x: Tensor =
            tract_ndarray::Array4::from_shape_vec((1, 64, 64, 1), x.as_slice().to_vec())
                .unwrap()
                .into();
        let inputs = tvec!(x.into_tvalue());
        group.bench_function(BenchmarkId::new("tract-onnx 64x64", "1 thread"), |b| {
            b.iter(|| black_box(tract.run(inputs.clone()).unwrap()))
        });
    }
    group.finish();
}

fn throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("throughput_batch_64");
    group.throughput(Throughput::Elements(BATCH as u64));
    let model = MiniXception::from_source(&mut SyntheticWeights::new(1))
        .expect("seeded weights fit in memory");
    let model48 = MiniXception48::from_source(&mut SyntheticWeights::new(1))
        .expect("seeded weights fit in memory");
    let inputs: Vec<MiniXceptionInput> = vec![*input::<64, 64>(); BATCH];
    let inputs48: Vec<MiniXception48Input> = vec![*input::<48, 48>(); BATCH];
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut scratches: Vec<MiniXceptionScratch> =
            (0..threads).map(|_| MiniXceptionScratch::new()).collect();
        let mut outputs = vec![[0.0f32; 7]; BATCH];
        group.bench_function(
            BenchmarkId::new("mini-xception 64x64", format!("{threads} threads")),
            |b| {
                b.iter(|| {
                    pool.install(|| model.forward_batch(&inputs, &mut outputs, &mut scratches))
                })
            },
        );
        let mut scratches: Vec<MiniXception48Scratch> =
            (0..threads).map(|_| MiniXception48Scratch::new()).collect();
        group.bench_function(
            BenchmarkId::new("mini-xception 48x48", format!("{threads} threads")),
            |b| {
                b.iter(|| {
                    pool.install(|| model48.forward_batch(&inputs48, &mut outputs, &mut scratches))
                })
            },
        );
    }
    if let Some(tract) = tract_model(BATCH) {
        let data: Vec<f32> = inputs.iter().flat_map(|x| x.as_slice().to_vec()).collect();
        let x: Tensor = tract_ndarray::Array4::from_shape_vec((BATCH, 64, 64, 1), data)
            .unwrap()
            .into();
        let batch = tvec!(x.into_tvalue());
        group.bench_function(BenchmarkId::new("tract-onnx 64x64", "1 thread"), |b| {
            b.iter(|| black_box(tract.run(batch.clone()).unwrap()))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50);
    targets = latency, throughput
}
criterion_main!(benches);
