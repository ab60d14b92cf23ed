//! The Haar cascade face detector per photo size, on one thread and on two,
//! with the paper's settings (scale factor 1.3, 5 neighbours) and with the
//! video settings (faces of at least 48 pixels).
//!
//! ```text
//! cargo bench -p mini-xception-benches --bench detect
//! ```
//!
//! The photos are the reference photos in `../shared/reference/images`, and a
//! 640x480 piece of one of them (a camera frame's size); the cascade is
//! OpenCV's `haarcascade_frontalface_default.xml` in `../shared/models`.
//! OpenCV itself is compared in one run by `scripts/compare_opencv.py`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use mini_xception::detect::{Cascade, DetectOptions};
use mini_xception::preprocess::load_gray;
use std::hint::black_box;

use mini_xception_testdata::shared;

fn detect(c: &mut Criterion) {
    let cascade = Cascade::from_xml_file(&shared("models/haarcascade_frontalface_default.xml"))
        .expect("OpenCV's cascade in ../shared/models");
    let load = |name: &str| {
        load_gray(&shared(&format!("reference/images/{name}")))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let angry_men = load("12_angry_men.jpg");
    let frame = image::imageops::crop_imm(&angry_men, 320, 100, 640, 480).to_image();
    let photos = [
        ("640x480", frame),
        ("1280x720", angry_men),
        ("995x960", load("solvay_conference.jpg")),
        ("2048x1536", load("robocup_team.png")),
    ];
    let settings = [
        (
            "min size 48",
            DetectOptions {
                min_size: (48, 48),
                ..DetectOptions::default()
            },
        ),
        ("min size 0", DetectOptions::default()),
    ];
    for (setting, options) in settings {
        let mut group = c.benchmark_group(format!("detect 1.3, 5 neighbours, {setting}"));
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("a thread pool");
            for (size, photo) in &photos {
                group.bench_function(
                    BenchmarkId::new(*size, format!("{threads} thread(s)")),
                    |b| {
                        b.iter(|| {
                            pool.install(|| black_box(cascade.detect(black_box(photo), &options)))
                        })
                    },
                );
            }
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = detect
}
criterion_main!(benches);
