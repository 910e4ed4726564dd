//! Zero-copy access: chunks mapped into the guest's window.
//!
//! The host maps a chunk's segment into the guest's address space above its heap (the
//! *window*) and returns the address; loads and stores reach the shared pages directly and
//! native peers see them at once. Two rules make this sound:
//!
//! - **No references into the window.** Peers may change the bytes at any moment, so Rust may
//!   not assume they stay put: there is no `&[u8]` over window bytes, only copies in and out
//!   and single-byte accesses.
//! - **No bulk-memory instructions.** `memory.copy` and `memory.fill` (what `copy_from_slice`
//!   and `fill` compile to) are checked against the heap size and trap in the window, and so
//!   do canonical-ABI lists pointing there. The copies here are loops of volatile loads and
//!   stores (128-bit SIMD when the guest is built with `simd128`), which the compiler cannot
//!   merge into bulk-memory instructions. Copy window bytes to the heap before passing them to
//!   any import.
//!
//! An access outside the mapped segment, a store through a read-only view, or an access
//! after the segment was released traps the guest; nothing else is affected.

use std::fmt;
use std::marker::PhantomData;

/// Read access to `len` bytes in the window. Borrowing the chunk or registration it came from
/// keeps the mapping alive.
pub struct Window<'a> {
    addr: usize,
    len: usize,
    _borrow: PhantomData<&'a ()>,
}

/// Read-write access to `len` bytes in the window.
pub struct WindowMut<'a> {
    inner: Window<'a>,
}

impl<'a> Window<'a> {
    /// # Safety
    /// `addr..addr + len` must be mapped (or trap) for as long as `'a`.
    pub(crate) unsafe fn new(addr: u32, len: u64) -> crate::Result<Self> {
        let end = u64::from(addr).checked_add(len).filter(|&e| e <= 1 << 32);
        let (Some(_), Ok(len)) = (end, usize::try_from(len)) else {
            return Err(crate::Error::InvalidOffset(format!(
                "{len} bytes at {addr:#x} leave the 32-bit address space"
            )));
        };
        Ok(Self {
            addr: addr as usize,
            len,
            _borrow: PhantomData,
        })
    }

    /// The guest address of the first byte.
    pub fn addr(&self) -> u32 {
        self.addr as u32
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Raw pointer to the first byte, for code that needs its own loops. Never form a
    /// reference from it, and never hand it to `copy_nonoverlapping`, `fill` or an import.
    pub fn as_ptr(&self) -> *const u8 {
        self.addr as *const u8
    }

    /// Byte `index`.
    ///
    /// # Panics
    /// If `index >= len`.
    pub fn get(&self, index: usize) -> u8 {
        assert!(index < self.len, "index {index} out of {} bytes", self.len);
        // SAFETY: in bounds of the mapped range (checked above).
        unsafe { std::ptr::read_volatile(self.as_ptr().add(index)) }
    }

    /// Copies `dst.len()` bytes starting at byte `at` into `dst` (heap memory).
    ///
    /// # Panics
    /// If the range leaves the window bytes.
    pub fn copy_to(&self, at: usize, dst: &mut [u8]) {
        self.check(at, dst.len());
        // SAFETY: the source range is inside the mapping (checked), `dst` is heap memory.
        unsafe { raw::copy_out(dst.as_mut_ptr(), self.as_ptr().add(at), dst.len()) }
    }

    /// The bytes `at..at + len` copied into a new vector.
    pub fn to_vec(&self, at: usize, len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        self.copy_to(at, &mut out);
        out
    }

    fn check(&self, at: usize, len: usize) {
        assert!(
            at.checked_add(len).is_some_and(|end| end <= self.len),
            "{len} bytes at {at} leave the {} window bytes",
            self.len
        );
    }
}

impl<'a> WindowMut<'a> {
    /// # Safety
    /// As for [`Window::new`], and the range must be mapped writable.
    pub(crate) unsafe fn new(addr: u32, len: u64) -> crate::Result<Self> {
        // SAFETY: forwarded contract.
        Ok(Self {
            inner: unsafe { Window::new(addr, len)? },
        })
    }

    /// Read access to the same bytes.
    pub fn as_window(&self) -> &Window<'a> {
        &self.inner
    }

    pub fn addr(&self) -> u32 {
        self.inner.addr()
    }

    pub fn len(&self) -> usize {
        self.inner.len
    }

    pub fn is_empty(&self) -> bool {
        self.inner.len == 0
    }

    /// Raw pointer to the first byte; see [`Window::as_ptr`].
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.inner.addr as *mut u8
    }

    pub fn get(&self, index: usize) -> u8 {
        self.inner.get(index)
    }

    /// Sets byte `index`.
    ///
    /// # Panics
    /// If `index >= len`.
    pub fn set(&mut self, index: usize, value: u8) {
        self.inner.check(index, 1);
        // SAFETY: in bounds of the writable mapped range.
        unsafe { std::ptr::write_volatile(self.as_mut_ptr().add(index), value) }
    }

    pub fn copy_to(&self, at: usize, dst: &mut [u8]) {
        self.inner.copy_to(at, dst)
    }

    pub fn to_vec(&self, at: usize, len: usize) -> Vec<u8> {
        self.inner.to_vec(at, len)
    }

    /// Copies `src` (heap memory) to byte `at` onwards.
    ///
    /// # Panics
    /// If the range leaves the window bytes.
    pub fn copy_from(&mut self, at: usize, src: &[u8]) {
        self.inner.check(at, src.len());
        // SAFETY: the target range is inside the writable mapping (checked).
        unsafe { raw::copy_in(self.as_mut_ptr().add(at), src.as_ptr(), src.len()) }
    }

    /// Sets every byte to `value`.
    pub fn fill(&mut self, value: u8) {
        self.fill_range(0, self.inner.len, value)
    }

    /// Sets bytes `at..at + len` to `value`.
    ///
    /// # Panics
    /// If the range leaves the window bytes.
    pub fn fill_range(&mut self, at: usize, len: usize, value: u8) {
        self.inner.check(at, len);
        // SAFETY: the target range is inside the writable mapping (checked).
        unsafe { raw::fill(self.as_mut_ptr().add(at), value, len) }
    }
}

impl fmt::Debug for Window<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Window({:#x}, {} bytes)", self.addr, self.len)
    }
}

impl fmt::Debug for WindowMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WindowMut({:#x}, {} bytes)",
            self.inner.addr, self.inner.len
        )
    }
}

/// Copy and fill loops that stay loops: every access to the window side is volatile.
pub mod raw {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    use core::arch::wasm32::{u8x16_splat, v128, v128_load, v128_store};

    /// Bytes handled before the aligned wide loop takes over.
    fn head(ptr: usize, align: usize, len: usize) -> usize {
        (ptr.wrapping_neg() & (align - 1)).min(len)
    }

    /// Copies `len` bytes from heap memory `src` to window memory `dst`.
    ///
    /// # Safety
    /// Both ranges valid, not overlapping; `dst` writable.
    #[inline(never)]
    pub unsafe fn copy_in(dst: *mut u8, src: *const u8, len: usize) {
        // SAFETY: every access below stays within the ranges the caller vouches for.
        unsafe {
            let h = head(dst as usize, 16, len);
            for i in 0..h {
                dst.add(i).write_volatile(src.add(i).read());
            }
            let (dst, src, len) = (dst.add(h), src.add(h), len - h);
            let wide = len / 16 * 16;
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            {
                let mut i = 0;
                // Eight vectors per round: the loop overhead is what keeps a volatile loop
                // behind memcpy.
                while i + 128 <= wide {
                    let s = src.add(i) as *const v128;
                    let d = dst.add(i) as *mut v128;
                    let v = [
                        v128_load(s),
                        v128_load(s.add(1)),
                        v128_load(s.add(2)),
                        v128_load(s.add(3)),
                        v128_load(s.add(4)),
                        v128_load(s.add(5)),
                        v128_load(s.add(6)),
                        v128_load(s.add(7)),
                    ];
                    for (k, v) in v.into_iter().enumerate() {
                        d.add(k).write_volatile(v);
                    }
                    i += 128;
                }
                while i < wide {
                    let v = v128_load(src.add(i) as *const v128);
                    (dst.add(i) as *mut v128).write_volatile(v);
                    i += 16;
                }
            }
            #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
            {
                let mut i = 0;
                while i < wide {
                    let a = (src.add(i) as *const u64).read_unaligned();
                    let b = (src.add(i + 8) as *const u64).read_unaligned();
                    (dst.add(i) as *mut u64).write_volatile(a);
                    (dst.add(i + 8) as *mut u64).write_volatile(b);
                    i += 16;
                }
            }
            for i in wide..len {
                dst.add(i).write_volatile(src.add(i).read());
            }
        }
    }

    /// Copies `len` bytes from window memory `src` to heap memory `dst`.
    ///
    /// # Safety
    /// Both ranges valid, not overlapping; `dst` writable.
    #[inline(never)]
    pub unsafe fn copy_out(dst: *mut u8, src: *const u8, len: usize) {
        // SAFETY: every access below stays within the ranges the caller vouches for.
        unsafe {
            let h = head(src as usize, 16, len);
            for i in 0..h {
                dst.add(i).write(src.add(i).read_volatile());
            }
            let (dst, src, len) = (dst.add(h), src.add(h), len - h);
            let wide = len / 16 * 16;
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            {
                let mut i = 0;
                while i + 128 <= wide {
                    let s = src.add(i) as *const v128;
                    let d = dst.add(i) as *mut v128;
                    let v = [
                        s.read_volatile(),
                        s.add(1).read_volatile(),
                        s.add(2).read_volatile(),
                        s.add(3).read_volatile(),
                        s.add(4).read_volatile(),
                        s.add(5).read_volatile(),
                        s.add(6).read_volatile(),
                        s.add(7).read_volatile(),
                    ];
                    for (k, v) in v.into_iter().enumerate() {
                        v128_store(d.add(k), v);
                    }
                    i += 128;
                }
                while i < wide {
                    let v = (src.add(i) as *const v128).read_volatile();
                    v128_store(dst.add(i) as *mut v128, v);
                    i += 16;
                }
            }
            #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
            {
                let mut i = 0;
                while i < wide {
                    let a = (src.add(i) as *const u64).read_volatile();
                    let b = (src.add(i + 8) as *const u64).read_volatile();
                    (dst.add(i) as *mut u64).write_unaligned(a);
                    (dst.add(i + 8) as *mut u64).write_unaligned(b);
                    i += 16;
                }
            }
            for i in wide..len {
                dst.add(i).write(src.add(i).read_volatile());
            }
        }
    }

    /// Sets `len` bytes of window memory at `dst` to `value`.
    ///
    /// # Safety
    /// The range must be valid and writable.
    #[inline(never)]
    pub unsafe fn fill(dst: *mut u8, value: u8, len: usize) {
        // SAFETY: every store below stays within the range the caller vouches for.
        unsafe {
            let h = head(dst as usize, 16, len);
            for i in 0..h {
                dst.add(i).write_volatile(value);
            }
            let (dst, len) = (dst.add(h), len - h);
            let wide = len / 16 * 16;
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            {
                let v = u8x16_splat(value);
                let mut i = 0;
                while i + 128 <= wide {
                    let d = dst.add(i) as *mut v128;
                    for k in 0..8 {
                        d.add(k).write_volatile(v);
                    }
                    i += 128;
                }
                while i < wide {
                    (dst.add(i) as *mut v128).write_volatile(v);
                    i += 16;
                }
            }
            #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
            {
                let v = u64::from_ne_bytes([value; 8]);
                let mut i = 0;
                while i < wide {
                    (dst.add(i) as *mut u64).write_volatile(v);
                    (dst.add(i + 8) as *mut u64).write_volatile(v);
                    i += 16;
                }
            }
            for i in wide..len {
                dst.add(i).write_volatile(value);
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn copies_and_fills_every_alignment() {
            let src: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
            for offset in 0..17 {
                for len in [0, 1, 15, 16, 17, 33, 100, 150] {
                    let mut window = vec![0u8; 200];
                    // SAFETY: in bounds of both vectors.
                    unsafe { copy_in(window.as_mut_ptr().add(offset), src.as_ptr(), len) };
                    assert_eq!(&window[offset..offset + len], &src[..len]);
                    assert!(window[..offset].iter().all(|&b| b == 0));
                    let mut back = vec![0u8; len];
                    // SAFETY: in bounds of both vectors.
                    unsafe { copy_out(back.as_mut_ptr(), window.as_ptr().add(offset), len) };
                    assert_eq!(back, &src[..len]);
                    // SAFETY: in bounds.
                    unsafe { fill(window.as_mut_ptr().add(offset), 0xA5, len) };
                    assert!(window[offset..offset + len].iter().all(|&b| b == 0xA5));
                    assert!(
                        window[offset + len..]
                            .iter()
                            .all(|&b| b != 0xA5 || len == 0)
                    );
                }
            }
        }
    }
}
