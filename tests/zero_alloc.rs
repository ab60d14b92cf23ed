//! A forward pass makes no heap allocation: a counting global allocator
//! watches this thread while the model runs.

use mini_xception::runtime::Isa;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

mini_xception::mini_xception!("models/mini_xception.yaml");

mod support;

struct CountingAllocator;

thread_local! {
    // Per thread, so the test harness' own threads do not count.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counter is a const-initialised thread-local, which itself never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout`, through this allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: as for `dealloc`, and `new_size` is the caller's valid size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
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
