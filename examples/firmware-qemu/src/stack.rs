//! Stack high-water mark: paint the free stack with a pattern at start, then count from
//! the bottom how much of it was overwritten. The stack is the RAM above the statics
//! (`_stack_end`, cortex-m-rt's link.x) up to the top of RAM (`_stack_start`).

use core::ptr;

/// What a never-touched stack word holds.
const PAINT: u32 = 0xC0DE_5AFE;
/// Bytes just below the stack pointer left unpainted: `paint`'s own frame.
const MARGIN: usize = 64;

unsafe extern "C" {
    /// Top of the stack (highest address, exclusive), from link.x.
    static _stack_start: u32;
    /// Bottom of the stack (the end of the statics), from link.x.
    static _stack_end: u32;
}

// Only the symbols' addresses are taken, never their values (which is safe).
fn top() -> usize {
    &raw const _stack_start as usize
}

fn bottom() -> usize {
    &raw const _stack_end as usize
}

/// Bytes of stack the link left.
pub fn size() -> usize {
    top() - bottom()
}

/// Fill the unused stack (below the caller's frame) with the pattern.
#[inline(never)]
pub fn paint() {
    let sp = current_sp();
    let mut p = bottom();
    while p + MARGIN < sp {
        // SAFETY: `p` is word-aligned (link.x asserts `_stack_end % 4 == 0`) and lies
        // between the statics and the live stack: memory no one else uses while main
        // runs with interrupts off.
        unsafe { ptr::write_volatile(p as *mut u32, PAINT) };
        p += 4;
    }
}

/// Bytes of stack used so far at most (since `paint`).
pub fn used() -> usize {
    let mut p = bottom();
    // SAFETY: reads of painted (or since used) stack words, word-aligned, below the live
    // frames; they alias no Rust object the compiler tracks.
    while p < top() && unsafe { ptr::read_volatile(p as *const u32) } == PAINT {
        p += 4;
    }
    top() - p
}

/// The stack pointer of the caller (near enough: the address of a local).
#[inline(always)]
fn current_sp() -> usize {
    let here = 0u32;
    ptr::addr_of!(here) as usize
}
