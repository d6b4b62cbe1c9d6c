//! The C and C++ allocation entry points, each served by the jemalloc
//! built into this library, so that every allocation of the process is
//! sampled with its stack.
//!
//! glibc documents the set a replacement must provide for its own
//! functions to keep working ("Replacing malloc" in its manual): malloc,
//! free, calloc, realloc, and for the rest of glibc aligned_alloc,
//! malloc_usable_size, memalign, posix_memalign, pvalloc and valloc.
//! reallocarray is added because a pointer of one allocator must never
//! reach the other's realloc. The C++ operators are interposed too:
//! libstdc++'s call malloc, but a program may be linked against another
//! runtime's, and the sized and aligned forms must pair with ours.
//!
//! jemalloc is built with its `_rjem_` prefix and these wrappers forward
//! to it. An unprefixed jemalloc would define `malloc` itself, but a
//! cdylib exports only what Rust code defines, so its symbols would stay
//! hidden and nothing would be interposed.

use std::ffi::{c_int, c_void, CStr};

use tikv_jemalloc_sys as je;

/// # Safety
/// As C's `malloc`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    // SAFETY: jemalloc's malloc has C's contract.
    unsafe { je::malloc(size) }
}

/// # Safety
/// As C's `free`: `ptr` is null or came from this allocator.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    // SAFETY: every allocation function of the process is this library's,
    // so `ptr` came from jemalloc.
    unsafe { je::free(ptr) }
}

/// # Safety
/// As C's `calloc`.
#[no_mangle]
pub unsafe extern "C" fn calloc(n: usize, size: usize) -> *mut c_void {
    // SAFETY: jemalloc's calloc checks `n * size` for overflow.
    unsafe { je::calloc(n, size) }
}

/// # Safety
/// As C's `realloc`.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: `ptr` is null or jemalloc's, as for `free`.
    unsafe { je::realloc(ptr, size) }
}

/// # Safety
/// As glibc's `reallocarray`.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, n: usize, size: usize) -> *mut c_void {
    let Some(total) = n.checked_mul(size) else {
        set_errno(libc::ENOMEM);
        return std::ptr::null_mut();
    };
    // SAFETY: as `realloc`.
    unsafe { je::realloc(ptr, total) }
}

/// # Safety
/// As POSIX's `posix_memalign`: `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    // SAFETY: the caller passes a writable `out`; jemalloc checks `align`.
    unsafe { je::posix_memalign(out, align, size) }
}

/// # Safety
/// As C11's `aligned_alloc`.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    // SAFETY: jemalloc checks that `align` is a power of two.
    unsafe { je::aligned_alloc(align, size) }
}

/// # Safety
/// As glibc's `memalign`.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    // glibc rounds an alignment that is not a power of two up to one.
    let align = align.max(1).checked_next_power_of_two().unwrap_or(0);
    // SAFETY: as `aligned_alloc`.
    unsafe { je::aligned_alloc(align, size) }
}

/// # Safety
/// As glibc's `valloc`.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    // SAFETY: as `aligned_alloc`, with the page size.
    unsafe { je::aligned_alloc(page_size(), size) }
}

/// # Safety
/// As glibc's `pvalloc`.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    let Some(rounded) = size.max(1).checked_next_multiple_of(page) else {
        set_errno(libc::ENOMEM);
        return std::ptr::null_mut();
    };
    // SAFETY: as `aligned_alloc`.
    unsafe { je::aligned_alloc(page, rounded) }
}

/// # Safety
/// As glibc's `malloc_usable_size`: `ptr` is null or jemalloc's.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    if ptr.is_null() {
        return 0;
    }
    // SAFETY: `ptr` is a live allocation of jemalloc's.
    unsafe { je::malloc_usable_size(ptr) }
}

fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096)
}

fn set_errno(e: c_int) {
    // SAFETY: errno is this thread's own.
    unsafe { *libc::__errno_location() = e };
}

// The C++ operators. A throwing `new` that finds no memory must throw
// `std::bad_alloc`, which Rust cannot: it hands over to the next
// definition of the same operator (libstdc++'s), whose malloc is this
// library's and fails the same way, so that one calls the new-handler and
// throws.

type New = unsafe extern "C" fn(usize) -> *mut c_void;
type NewAligned = unsafe extern "C" fn(usize, usize) -> *mut c_void;

/// The next object's definition of `name`, or an abort when there is none
/// (a C++ program always has a runtime that defines it).
fn next<T: Copy>(name: &CStr) -> T {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name has no
    // preconditions; a null result is checked.
    let f = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    if f.is_null() {
        std::process::abort();
    }
    assert_eq!(std::mem::size_of::<T>(), std::mem::size_of::<*mut c_void>());
    // SAFETY: `T` is the function pointer type of the C++ operator `name`
    // names, the same size as the pointer dlsym returned (checked above).
    unsafe { std::mem::transmute_copy(&f) }
}

fn new_or_throw(size: usize, name: &CStr) -> *mut c_void {
    // SAFETY: as `malloc`; operator new never returns null for size 0.
    let p = unsafe { je::malloc(size.max(1)) };
    if !p.is_null() {
        return p;
    }
    // SAFETY: the next definition of this very operator.
    unsafe { next::<New>(name)(size) }
}

fn new_aligned_or_throw(size: usize, align: usize, name: &CStr) -> *mut c_void {
    // SAFETY: as `aligned_alloc`; `align` is a power of two by the
    // language's rules for `std::align_val_t`.
    let p = unsafe { je::aligned_alloc(align, size.max(1)) };
    if !p.is_null() {
        return p;
    }
    // SAFETY: the next definition of this very operator.
    unsafe { next::<NewAligned>(name)(size, align) }
}

/// `operator new(size_t)`.
#[no_mangle]
pub extern "C" fn _Znwm(size: usize) -> *mut c_void {
    new_or_throw(size, c"_Znwm")
}

/// `operator new[](size_t)`.
#[no_mangle]
pub extern "C" fn _Znam(size: usize) -> *mut c_void {
    new_or_throw(size, c"_Znam")
}

/// `operator new(size_t, std::nothrow_t const&)`.
#[no_mangle]
pub extern "C" fn _ZnwmRKSt9nothrow_t(size: usize, _: *const c_void) -> *mut c_void {
    // SAFETY: as `malloc`.
    unsafe { je::malloc(size.max(1)) }
}

/// `operator new[](size_t, std::nothrow_t const&)`.
#[no_mangle]
pub extern "C" fn _ZnamRKSt9nothrow_t(size: usize, _: *const c_void) -> *mut c_void {
    // SAFETY: as `malloc`.
    unsafe { je::malloc(size.max(1)) }
}

/// `operator new(size_t, std::align_val_t)`.
#[no_mangle]
pub extern "C" fn _ZnwmSt11align_val_t(size: usize, align: usize) -> *mut c_void {
    new_aligned_or_throw(size, align, c"_ZnwmSt11align_val_t")
}

/// `operator new[](size_t, std::align_val_t)`.
#[no_mangle]
pub extern "C" fn _ZnamSt11align_val_t(size: usize, align: usize) -> *mut c_void {
    new_aligned_or_throw(size, align, c"_ZnamSt11align_val_t")
}

/// `operator new(size_t, std::align_val_t, std::nothrow_t const&)`.
#[no_mangle]
pub extern "C" fn _ZnwmSt11align_val_tRKSt9nothrow_t(
    size: usize,
    align: usize,
    _: *const c_void,
) -> *mut c_void {
    // SAFETY: as `aligned_alloc`.
    unsafe { je::aligned_alloc(align, size.max(1)) }
}

/// `operator new[](size_t, std::align_val_t, std::nothrow_t const&)`.
#[no_mangle]
pub extern "C" fn _ZnamSt11align_val_tRKSt9nothrow_t(
    size: usize,
    align: usize,
    _: *const c_void,
) -> *mut c_void {
    // SAFETY: as `aligned_alloc`.
    unsafe { je::aligned_alloc(align, size.max(1)) }
}

/// Every `operator delete` and `operator delete[]`: plain, sized, aligned
/// and nothrow, which all free the pointer, the first argument.
macro_rules! deletes {
    ($($name:ident($($arg:ty),*);)*) => {$(
        /// # Safety
        /// As C++'s `operator delete`: `ptr` came from an `operator new`.
        #[no_mangle]
        pub unsafe extern "C" fn $name(ptr: *mut c_void, $(_: $arg),*) {
            // SAFETY: every operator new of the process is this library's.
            unsafe { je::free(ptr) }
        }
    )*};
}

deletes! {
    _ZdlPv();
    _ZdaPv();
    _ZdlPvm(usize);
    _ZdaPvm(usize);
    _ZdlPvRKSt9nothrow_t(*const c_void);
    _ZdaPvRKSt9nothrow_t(*const c_void);
    _ZdlPvSt11align_val_t(usize);
    _ZdaPvSt11align_val_t(usize);
    _ZdlPvmSt11align_val_t(usize, usize);
    _ZdaPvmSt11align_val_t(usize, usize);
    _ZdlPvSt11align_val_tRKSt9nothrow_t(usize, *const c_void);
    _ZdaPvSt11align_val_tRKSt9nothrow_t(usize, *const c_void);
}
