//! The arena as this test binary's global allocator: over-aligned requests
//! (SIMD kernels ask for 128 bytes and more) are served from the arena inside
//! a frame, aligned, and keep their alignment when recycled.

use facegate_arena::{system_allocations, FrameArenaAllocator, FrameScope};
use std::alloc::{GlobalAlloc, Layout};

#[global_allocator]
static ALLOCATOR: FrameArenaAllocator = FrameArenaAllocator;

#[test]
fn over_aligned_blocks_come_from_the_arena_aligned() {
    let layouts: Vec<Layout> = [(100, 128), (4000, 256), (70_000, 4096), (64, 64), (1, 1024)]
        .iter()
        .map(|&(size, align)| Layout::from_size_align(size, align).unwrap())
        .collect();
    for round in 0..3 {
        let _frame = FrameScope::enter();
        let before = system_allocations();
        let mut blocks = Vec::new();
        for layout in &layouts {
            // SAFETY: non-zero sizes; each block is freed below with its layout.
            let p = unsafe { ALLOCATOR.alloc(*layout) };
            assert!(!p.is_null());
            assert!((p as usize).is_multiple_of(layout.align()), "round {round}: {layout:?} at {p:?}");
            // SAFETY: the block holds layout.size() bytes.
            unsafe { p.write_bytes(0xA5, layout.size()) };
            blocks.push((p, *layout));
        }
        // Only `blocks` growing may call the system allocator; every block came from the arena.
        assert!(system_allocations() - before <= 3, "round {round}: the arena refused aligned blocks");
        for (p, layout) in blocks {
            // SAFETY: allocated above with this layout.
            unsafe { ALLOCATOR.dealloc(p, layout) };
        }
    }
    // Beyond a page the system allocator serves, still aligned.
    let _frame = FrameScope::enter();
    let layout = Layout::from_size_align(100, 8192).unwrap();
    let before = system_allocations();
    // SAFETY: as above.
    let p = unsafe { ALLOCATOR.alloc(layout) };
    assert!(!p.is_null() && (p as usize).is_multiple_of(8192));
    assert_eq!(system_allocations() - before, 1);
    // SAFETY: allocated above with this layout.
    unsafe { ALLOCATOR.dealloc(p, layout) };
}
