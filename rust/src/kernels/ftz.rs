//! Flush-to-zero (FTZ) and denormals-are-zero (DAZ) for the threads that compute.
//!
//! Subnormal floats (below 1.18e-38) are handled in microcode by many x86 processors, up to
//! ~100× slower per operation (Intel Xeon: a 768 × 20,480 GEMM at batch 64 with 20% subnormal
//! weights took 86× longer). The loader already sets subnormal weights to zero
//! (`weights::flush_subnormals`), but intermediate products and a caller's subnormal inputs can
//! still produce them, so every worker thread of the engine's pool sets MXCSR's FTZ (results
//! that would be subnormal become 0) and DAZ (subnormal operands read as 0) when it starts.
//! Every product runs on those workers (`infer` installs each batch on the pool; the `gemm`
//! crate is called with `Parallelism::None`, on the worker that calls it), or, for a one-thread
//! engine, on the caller's thread inside `with_flush_to_zero`, which restores the thread's flags
//! afterwards. The flags are per thread, so the caller's own code (Python's, torch's) keeps its
//! arithmetic.

/// MXCSR bit 15: results that would be subnormal are written as zero.
pub const FTZ: u32 = 1 << 15;
/// MXCSR bit 6: subnormal operands are read as zero.
pub const DAZ: u32 = 1 << 6;

/// The calling thread's MXCSR (SSE/AVX control and status), or `None` off x86-64.
pub fn mxcsr() -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    {
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr stores 4 bytes into a live, writable u32.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
        }
        Some(csr)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// The flags `set_flush_to_zero` sets on this CPU: FTZ, and DAZ where the CPU's MXCSR mask
/// allows it (0 off x86-64).
pub fn flush_flags() -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        FTZ | (DAZ & mxcsr_mask())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Sets `flush_flags()` on the calling thread. Returns them.
pub fn set_flush_to_zero() -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        let want = flush_flags();
        let csr = mxcsr().unwrap_or(0) | want;
        // SAFETY: only FTZ and mask-permitted DAZ are added to the current value, so ldmxcsr
        // cannot fault; the flags change rounding of subnormals only.
        unsafe {
            std::arch::asm!(
                "ldmxcsr [{}]",
                in(reg) &csr,
                options(nostack, readonly, preserves_flags)
            );
        }
        want
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Runs `f` on the calling thread with `flush_flags()` set, then puts the thread's MXCSR back
/// as it was (also if `f` panics): the one-thread engine computes on its caller's thread, whose
/// arithmetic must not change for the caller's own code.
pub fn with_flush_to_zero<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(Option<u32>);
    impl Drop for Restore {
        fn drop(&mut self) {
            #[cfg(target_arch = "x86_64")]
            if let Some(csr) = self.0 {
                // SAFETY: the value was read from this thread's MXCSR by `mxcsr()`, so loading
                // it back cannot fault.
                unsafe {
                    std::arch::asm!(
                        "ldmxcsr [{}]",
                        in(reg) &csr,
                        options(nostack, readonly, preserves_flags)
                    );
                }
            }
        }
    }
    let _restore = Restore(mxcsr());
    set_flush_to_zero();
    f()
}

/// Which MXCSR bits the CPU accepts: FXSAVE's MXCSR_MASK (0 there means the default 0xFFBF,
/// i.e. no DAZ, on the earliest SSE processors).
#[cfg(target_arch = "x86_64")]
fn mxcsr_mask() -> u32 {
    #[repr(C, align(16))]
    struct Area([u8; 512]);
    let mut area = Area([0; 512]);
    // SAFETY: FXSAVE writes 512 bytes to a 16-byte-aligned buffer of that size; every x86-64
    // CPU has FXSR.
    unsafe { std::arch::x86_64::_fxsave(area.0.as_mut_ptr()) };
    let mask = u32::from_le_bytes([area.0[28], area.0[29], area.0[30], area.0[31]]);
    if mask == 0 {
        0xFFBF
    } else {
        mask
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hint::black_box;

    #[test]
    fn flags_flush_products_and_operands_on_this_thread_only() {
        std::thread::spawn(|| {
            let sub = f32::from_bits(1); // smallest subnormal
            assert!(black_box(1e-20f32) * black_box(1e-20f32) > 0.0);
            let set = set_flush_to_zero();
            if mxcsr().is_none() {
                return;
            }
            assert_ne!(set & FTZ, 0);
            assert_eq!(mxcsr().unwrap() & set, set);
            assert_eq!(black_box(1e-20f32) * black_box(1e-20f32), 0.0); // FTZ
            if set & DAZ != 0 {
                assert_eq!(black_box(sub) * black_box(2.0f32), 0.0); // DAZ
            }
        })
        .join()
        .unwrap();
        // scoped: flushed inside, the thread's own flags back afterwards
        std::thread::spawn(|| {
            let before = mxcsr();
            let inside = with_flush_to_zero(|| black_box(1e-20f32) * black_box(1e-20f32));
            if before.is_some() {
                assert_eq!(inside, 0.0);
            }
            assert_eq!(mxcsr(), before);
            assert!(black_box(1e-20f32) * black_box(1e-20f32) > 0.0);
        })
        .join()
        .unwrap();
        // a thread that did not set them still computes subnormals
        std::thread::spawn(|| assert!(black_box(1e-20f32) * black_box(1e-20f32) > 0.0))
            .join()
            .unwrap();
    }
}
