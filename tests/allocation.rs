//! The model's heap allocations, watched by a global allocator: a forward
//! pass makes none, and when the memory runs out the scratch space and the
//! weights give an error, not a panic. The allocator counts and refuses per
//! thread, so the test harness' other threads are left alone.

use mini_xception::models::{Classifier, LoadError};
use mini_xception::runtime::{AllocError, InferenceModel, Isa};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

// The library's own compiled models (models/mini_xception.yaml):
// compiling them again here would only cost build time.
use mini_xception::models::emotion::*;

mod support;

struct CountingAllocator;

thread_local! {
    // Per thread, so the test harness' own threads do not count.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    // Allocations of more bytes than this fail on this thread, as when the
    // memory runs out.
    static REFUSE_ABOVE: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Counts an allocation of `layout`; whether to refuse it.
fn refused(layout: Layout) -> bool {
    ALLOCATIONS.with(|count| count.set(count.get() + 1));
    layout.size() > REFUSE_ABOVE.with(Cell::get)
}

// SAFETY: every call is forwarded unchanged to the system allocator, or
// answered with null, which `GlobalAlloc` allows for any failed allocation;
// the counter and the limit are const-initialised thread-locals, which
// themselves never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refused(layout) {
            return std::ptr::null_mut();
        }
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if refused(layout) {
            return std::ptr::null_mut();
        }
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`, through this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Layout::from_size_align(new_size, layout.align()).is_ok_and(refused) {
            return std::ptr::null_mut();
        }
        // SAFETY: as for `dealloc`, and `new_size` is the caller's valid size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// Runs `f` on this thread with every allocation of more than `bytes`
/// refused.
fn with_memory_limit<T>(bytes: usize, f: impl FnOnce() -> T) -> T {
    REFUSE_ABOVE.with(|limit| limit.set(bytes));
    let result = f();
    REFUSE_ABOVE.with(|limit| limit.set(usize::MAX));
    result
}

/// The largest tensor of the model's scratch space is the first module's
/// separable convolution outputs, 60 x 60 x 16 values (230,400 bytes); the
/// largest layer of its weights is the last module's second separable
/// convolution, 3 x 3 x 128 depthwise, 128 x 128 pointwise and 128 biases
/// (70,656 bytes). Each is one allocation.
#[test]
fn out_of_memory_is_an_error_for_the_scratch_space_and_the_weights() {
    const SCRATCH_LARGEST: usize = 60 * 60 * 16 * 4;
    const WEIGHTS_LARGEST: usize = (9 * 128 + 128 * 128 + 128) * 4;
    let scratch = with_memory_limit(SCRATCH_LARGEST - 1, MiniXceptionScratch::try_new);
    assert_eq!(
        scratch.err(),
        Some(AllocError {
            bytes: SCRATCH_LARGEST
        })
    );
    assert!(with_memory_limit(SCRATCH_LARGEST, MiniXceptionScratch::try_new).is_ok());

    let weights = with_memory_limit(WEIGHTS_LARGEST - 1, MiniXceptionWeights::try_zeroed);
    assert_eq!(
        weights.err(),
        Some(AllocError {
            bytes: WEIGHTS_LARGEST
        })
    );
    assert!(with_memory_limit(WEIGHTS_LARGEST, MiniXceptionWeights::try_zeroed).is_ok());
    let read = with_memory_limit(WEIGHTS_LARGEST - 1, || {
        MiniXceptionWeights::from_source(&mut support::RandomSource::new(3))
    });
    assert_eq!(
        read.err(),
        Some(AllocError {
            bytes: WEIGHTS_LARGEST
        })
    );

    // Through the library: the trait and the classifier give the error.
    assert!(
        with_memory_limit(
            SCRATCH_LARGEST - 1,
            <MiniXception as InferenceModel>::try_new_scratch
        )
        .is_err()
    );
    let model = MiniXception::from_source(&mut support::RandomSource::new(3)).unwrap();
    let classifier = with_memory_limit(SCRATCH_LARGEST - 1, || Classifier::new(model));
    let error = LoadError::from(classifier.err().unwrap());
    assert_eq!(
        error.to_string(),
        "out of memory: 230400 bytes (0.2 MiB) could not be allocated"
    );
}

#[test]
fn a_forward_pass_allocates_nothing() {
    let model = MiniXception::from_source(&mut support::RandomSource::new(7)).unwrap();
    let mut scratch = MiniXceptionScratch::new();
    let mut input = MiniXceptionInput::zeroed_boxed();
    input
        .copy_from_view(support::random_image(8, 64, 64).view())
        .unwrap();

    // The counter works: setting up allocated.
    let before_setup = allocations();
    let probe = std::hint::black_box(Box::new([0u8; 16]));
    assert_eq!(allocations(), before_setup + 1);
    drop(probe);

    // Every compiled variant of the forward pass this CPU can run.
    let mut model = model;
    for isa in Isa::ALL.into_iter().filter(|isa| isa.is_available()) {
        model = model.with_isa(isa);
        let before = allocations();
        let mut probabilities = [0.0; 7];
        for _ in 0..3 {
            probabilities = model.forward(&input, &mut scratch);
        }
        let logits = model.logits(&input, &mut scratch);
        assert_eq!(
            allocations(),
            before,
            "the {} forward pass allocated",
            isa.name()
        );
        assert!(
            probabilities.iter().all(|p| p.is_finite()) && logits.iter().all(|l| l.is_finite())
        );
    }
}
