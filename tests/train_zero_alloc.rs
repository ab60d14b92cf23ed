//! A training step makes no heap allocation once the trainer is built: a
//! counting global allocator watches every thread, the trainer's pool
//! included, while steps run. (This file has one test, so that no other
//! test allocates meanwhile.) The model is the shipped 48x48 one, whose
//! training code `mini-xception-models` has compiled already: a model of
//! this file's own would be compiled again for it alone.

use mini_xception::models::paz::MiniXceptionPaz;
use mini_xception::runtime::train::TrainableModel;
use mini_xception::runtime::{Isa, bytemuck, flat_mut};
use mini_xception::train::keras_initial;
use mini_xception::train::{Trainer, TrainerOptions};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is a static atomic, which never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`, through this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: as for `dealloc`, and `new_size` is the caller's valid size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn training_steps_allocate_nothing_after_the_first() {
    const BATCH: usize = 8;
    let mut inputs: Vec<<MiniXceptionPaz as mini_xception::runtime::InferenceModel>::Input> =
        vec![bytemuck::Zeroable::zeroed(); BATCH];
    for (i, input) in inputs.iter_mut().enumerate() {
        for (j, value) in flat_mut(input).iter_mut().enumerate() {
            *value = ((i * 31 + j * 7) % 17) as f32 / 8.5 - 1.0;
        }
    }
    let labels: Vec<usize> = (0..BATCH).map(|i| i % MiniXceptionPaz::CLASSES).collect();
    // The counter sees allocations made on other threads. (Checked first: a
    // finished thread may still free and allocate while it exits.)
    let before_probe = ALLOCATIONS.load(Ordering::SeqCst);
    std::thread::spawn(|| drop(std::hint::black_box(Box::new([0u8; 16]))))
        .join()
        .unwrap();
    assert!(ALLOCATIONS.load(Ordering::SeqCst) > before_probe);
    std::thread::sleep(std::time::Duration::from_millis(50));
    // Both trainers live to the end: a dropped pool's threads exit (and free
    // memory) on their own time, which would be counted.
    let mut trainers: Vec<(usize, Trainer<MiniXceptionPaz>)> = [1, 2]
        .into_iter()
        .map(|threads| {
            let (parameters, statistics) = keras_initial::<MiniXceptionPaz>(5);
            let options = TrainerOptions {
                batch: BATCH,
                threads,
                isa: Isa::detect(),
                ..TrainerOptions::default()
            };
            (
                threads,
                Trainer::<MiniXceptionPaz>::new(parameters, statistics, options).unwrap(),
            )
        })
        .collect();
    let firsts: Vec<_> = trainers
        .iter_mut()
        .map(|(_, trainer)| trainer.step(&inputs, &labels).unwrap())
        .collect();
    // Pool threads finish starting on their own time (their start-up
    // allocates on a loaded machine, late): a few more steps and a pause
    // before counting.
    for (_, trainer) in &mut trainers {
        trainer.step(&inputs, &labels).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    for ((threads, trainer), first) in trainers.iter_mut().zip(firsts) {
        let before = ALLOCATIONS.load(Ordering::SeqCst);
        let mut last = first;
        for _ in 0..4 {
            last = trainer.step(&inputs, &labels).unwrap();
        }
        let during = ALLOCATIONS.load(Ordering::SeqCst) - before;
        assert_eq!(
            during, 0,
            "{threads} threads: 4 steps allocated {during} times"
        );
        // The steps did train: the same batch's loss went down.
        assert!(
            last.loss < first.loss,
            "{threads} threads: loss {} then {}",
            first.loss,
            last.loss
        );
    }
}
