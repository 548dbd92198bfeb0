//! The frame arena: a global allocator that serves the door loop's
//! per-frame allocations from one preallocated region, recycled frame
//! after frame.
//!
//! Why: tract's interpreter creates every intermediate tensor afresh on each
//! run (~400 allocations a frame) and the image decoders allocate too. Served by
//! malloc, that is hundreds of calls into the system heap per frame, several-MB
//! tensors handed back and forth to the kernel (glibc's mmap threshold), and a
//! heap that may fragment over months of uptime. In the arena those requests are
//! answered from size-class free lists that the first frames fill: after warm-up
//! the frame path makes no call into the system allocator, and its memory is
//! bounded by what one frame needs at most.
//!
//! Outside a [`FrameScope`] every allocation goes to the system allocator, so
//! long-lived data (gallery, models, log) never lands in the arena. A block from
//! the arena may be freed anywhere, by any thread: it goes back to its free list.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Address space reserved for the arena; only the pages frames touch become resident.
const REGION_BYTES: usize = 256 << 20;
/// Every block starts on this boundary (class sizes are multiples of it).
const BLOCK_ALIGN: usize = 64;
/// Alignments served: 64, 128, … up to a page (SIMD kernels ask for more than
/// 64), each with its own free lists so a recycled block keeps its alignment.
const ALIGNMENTS: usize = 7;
const MAX_ALIGN: usize = BLOCK_ALIGN << (ALIGNMENTS - 1);
/// Classes: multiples of 64 bytes up to 1 KiB, then four per doubling.
const SMALL_CLASSES: usize = 16;
const CLASSES: usize = SMALL_CLASSES + 4 * 40;

/// Size-class index and block size for a request of `n` bytes.
fn class_of(n: usize) -> (usize, usize) {
    let n = n.max(1);
    if n <= SMALL_CLASSES * BLOCK_ALIGN {
        let i = n.div_ceil(BLOCK_ALIGN) - 1;
        return (i, (i + 1) * BLOCK_ALIGN);
    }
    let e = (usize::BITS - 1 - (n - 1).leading_zeros()) as usize; // 2^e < n ≤ 2^(e+1)
    let quarter = 1usize << (e - 2);
    let k = (n - (1 << e)).div_ceil(quarter); // 1..=4
    (SMALL_CLASSES + (e - 10) * 4 + (k - 1), (1 << e) + k * quarter)
}

struct ArenaState {
    /// Bytes of the region handed out so far (its resident high-water mark).
    used: usize,
    /// Per alignment and class, the first free block; a free block holds the next one's address.
    free: [[usize; CLASSES]; ALIGNMENTS],
}

struct Arena {
    lock: AtomicBool,
    /// Region start (0 until the first frame), readable without the lock.
    base: AtomicUsize,
    state: UnsafeCell<ArenaState>,
}

// SAFETY: `state` is only touched while `lock` is held.
unsafe impl Sync for Arena {}

static ARENA: Arena = Arena {
    lock: AtomicBool::new(false),
    base: AtomicUsize::new(0),
    state: UnsafeCell::new(ArenaState { used: 0, free: [[0; CLASSES]; ALIGNMENTS] }),
};

static SYSTEM_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ARENA_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ARENA_USED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static IN_FRAME: Cell<bool> = const { Cell::new(false) };
}

impl Arena {
    fn with<R>(&self, f: impl FnOnce(&mut ArenaState) -> R) -> R {
        while self.lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            std::hint::spin_loop();
        }
        // SAFETY: the lock is held, so this is the only reference.
        let r = f(unsafe { &mut *self.state.get() });
        self.lock.store(false, Ordering::Release);
        r
    }

    fn contains(&self, ptr: *mut u8) -> bool {
        let base = self.base.load(Ordering::Acquire);
        base != 0 && (ptr as usize) >= base && (ptr as usize) < base + REGION_BYTES
    }

    /// Free-list set of an alignment (at most [`MAX_ALIGN`]).
    fn alignment_index(align: usize) -> usize {
        (align.max(BLOCK_ALIGN).trailing_zeros() - BLOCK_ALIGN.trailing_zeros()) as usize
    }

    fn alloc(&self, size: usize, align: usize) -> Option<*mut u8> {
        let (class, block) = class_of(size);
        let a = Self::alignment_index(align);
        let align = align.max(BLOCK_ALIGN);
        self.with(|s| {
            let mut base = self.base.load(Ordering::Acquire);
            if base == 0 {
                base = reserve_region()?;
                self.base.store(base, Ordering::Release);
            }
            let head = s.free[a][class];
            if head != 0 {
                // SAFETY: a free block's first word holds the next free block of its class.
                s.free[a][class] = unsafe { *(head as *const usize) };
                return Some(head as *mut u8);
            }
            // The region starts on a page, so an offset aligned to `align` is an aligned address.
            let start = s.used.next_multiple_of(align);
            if start + block > REGION_BYTES {
                return None; // full: the caller falls back to the system allocator
            }
            let p = base + start;
            s.used = start + block;
            ARENA_USED.store(s.used, Ordering::Relaxed);
            Some(p as *mut u8)
        })
    }

    fn free(&self, ptr: *mut u8, size: usize, align: usize) {
        let (class, _) = class_of(size);
        let a = Self::alignment_index(align);
        self.with(|s| {
            // SAFETY: the block is at least 64 bytes, aligned as it was asked and no longer in use.
            unsafe { *(ptr as *mut usize) = s.free[a][class] };
            s.free[a][class] = ptr as usize;
        })
    }
}

#[cfg(not(unix))]
fn reserve_region() -> Option<usize> {
    None // no arena: everything goes to the system allocator
}

#[cfg(unix)]
fn reserve_region() -> Option<usize> {
    // SAFETY: an anonymous private mapping; no file, no aliasing.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            REGION_BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    (p != libc::MAP_FAILED).then_some(p as usize)
}

fn in_frame() -> bool {
    IN_FRAME.try_with(Cell::get).unwrap_or(false)
}

/// The global allocator: the arena inside a [`FrameScope`], the system allocator elsewhere.
pub struct FrameArenaAllocator;

impl FrameArenaAllocator {
    fn arena_alloc(layout: Layout) -> Option<*mut u8> {
        if layout.align() > MAX_ALIGN || !in_frame() {
            return None;
        }
        let p = ARENA.alloc(layout.size(), layout.align())?;
        ARENA_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        Some(p)
    }
}

// SAFETY: arena blocks are aligned as requested (64 at least), at least as large as requested, and
// never handed out twice; everything else is the system allocator's.
unsafe impl GlobalAlloc for FrameArenaAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(p) = Self::arena_alloc(layout) {
            return p;
        }
        SYSTEM_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if let Some(p) = Self::arena_alloc(layout) {
            // SAFETY: the block is at least `layout.size()` bytes; recycled blocks are dirty.
            unsafe { p.write_bytes(0, layout.size()) };
            return p;
        }
        SYSTEM_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ARENA.contains(ptr) {
            ARENA.free(ptr, layout.size(), layout.align());
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !ARENA.contains(ptr) {
            SYSTEM_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        if class_of(new_size).1 == class_of(layout.size()).1 {
            return ptr; // still fits its block
        }
        // SAFETY: same alignment as the original, which was valid; size is non-zero.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller of the two sizes and distinct.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            ARENA.free(ptr, layout.size(), layout.align());
        }
        new
    }
}

/// Sets the system heap's policy for this program; call first thing in `main`.
///
/// glibc raises its mmap threshold each time a large block is freed, so the
/// transient tensors of tract's model optimisation end up in the heap and leave
/// it fragmented: the peak resident size at start was 87 MB. With the threshold
/// pinned at 256 KiB every large block is mapped and unmapped on its own, and
/// the peak drops to 65 MB (`device run`, measured on x86_64).
pub fn configure_system_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Hands memory freed after loading (tract's model parsing and optimisation
/// leave ~20 MB of free heap) back to the system, so the resident size is
/// what the running unit needs.
pub fn trim_system_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory at the top of glibc's heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// While alive, this thread's allocations come from the arena.
pub struct FrameScope {
    was: bool,
}

impl FrameScope {
    /// Routes this thread's allocations to the arena until dropped.
    pub fn enter() -> Self {
        let was = in_frame();
        let _ = IN_FRAME.try_with(|c| c.set(true));
        FrameScope { was }
    }
}

impl Drop for FrameScope {
    fn drop(&mut self) {
        let _ = IN_FRAME.try_with(|c| c.set(self.was));
    }
}

/// Calls into the system allocator so far (allocations and reallocations), all threads.
pub fn system_allocations() -> u64 {
    SYSTEM_ALLOCATIONS.load(Ordering::Relaxed)
}

/// Allocations served by the arena so far.
pub fn arena_allocations() -> u64 {
    ARENA_ALLOCATIONS.load(Ordering::Relaxed)
}

/// Bytes of the arena handed out so far: its resident size, at most.
pub fn arena_bytes() -> usize {
    ARENA_USED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_the_request_and_are_block_aligned() {
        let mut last = class_of(1);
        for n in 1..=(1 << 22) {
            let (i, size) = class_of(n);
            assert!(size >= n && size % BLOCK_ALIGN == 0, "{n} → {size}");
            assert!(i < CLASSES);
            assert!(i >= last.0 && (i > last.0 || size == last.1), "classes grow with the request");
            if n > 1024 {
                assert!(size as f64 <= n as f64 * 1.25 + 1.0, "waste above 25 % at {n}");
            }
            last = (i, size);
        }
        assert!(class_of(REGION_BYTES).0 < CLASSES);
    }
}
