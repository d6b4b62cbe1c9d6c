//! Which crate a frame belongs to, when that crate is the runtime around
//! the application rather than the application: the standard library, the
//! async runtime and HTTP stack most Rust services run on, and the
//! allocator. A flamegraph folds each run of such frames into one, so that
//! a leak's stack reads as the application's own calls.

/// The crates folded by default: the issue of every Rust service's
/// flamegraph is dozens of `poll`, `call` and `with_budget` frames of these.
const FRAMEWORKS: &[&str] = &[
    "std",
    "core",
    "alloc",
    "tokio",
    "hyper",
    "hyper_util",
    "axum",
    "axum_core",
    "tower",
    "tower_http",
    "tower_service",
    "futures",
    "futures_util",
    "futures_core",
    "hashbrown",
];

/// The allocator's and the agent's own entry points, named as one crate;
/// never the code responsible for a leak either (`is_runtime_frame`).
pub(super) const ALLOCATOR_PREFIXES: &[&str] = &[
    "__rust",
    "__rdl",
    "__rg",
    "_rjem",
    "je_",
    "tikv_jemalloc",
    "heaptide_agent",
    "malloc",
    "calloc",
    "realloc",
    "posix_memalign",
    "aligned_alloc",
    // The C and C++ entry points `libheaptide_preload.so` puts jemalloc
    // under.
    "memalign",
    "valloc",
    "pvalloc",
    "operator new",
    "operator delete",
    "heaptide_preload",
];

/// jemalloc's internal functions, which its static symbols name bare.
const JEMALLOC_INTERNAL: &[&str] = &[
    "prof_",
    "imalloc",
    "ialloc",
    "iralloc",
    "ipalloc",
    "arena_",
    "tcache_",
    "large_",
    "extent_",
    "ecache_",
    "emap_",
    "do_rallocx",
];

/// The C library's functions that allocate on their caller's behalf: in a
/// C program's stack (under the preload library) the caller is the code
/// responsible, not `strdup`.
pub(super) const LIBC_ALLOCATING: &[&str] = &[
    "strdup",
    "__strdup",
    "strndup",
    "__strndup",
    "asprintf",
    "__asprintf",
    "vasprintf",
    "__vasprintf",
    "getline",
    "getdelim",
    "__getdelim",
    "fopen",
    "fopen64",
    "fdopen",
    "_IO_file_doallocate",
    "_IO_doallocbuf",
    "opendir",
    "fdopendir",
    "__alloc_dir",
    "realpath",
    "scandir",
    "open_memstream",
    "tsearch",
];

/// The C library's start of a process and of a thread.
const LIBC_ENTRIES: &[&str] = &[
    "main",
    "_start",
    "__libc_start_main",
    "__libc_start_call_main",
    "start_thread",
    "clone",
    "clone3",
    "__clone",
    "__clone3",
];

/// The framework crate `function` belongs to, or `None` for the
/// application's own code (and for frames that name no crate: an
/// address, a bracketed placeholder). `<Type as Trait>::method` belongs
/// to the type's crate (an application's impl is application code), or,
/// when the type names no path (`u8`, a generic `F`), to the trait's.
pub fn framework_of(function: &str) -> Option<&'static str> {
    let f = function.trim_start_matches('<');
    if ALLOCATOR_PREFIXES.iter().any(|p| f.starts_with(p)) {
        return Some("alloc");
    }
    if !f.contains("::") {
        if JEMALLOC_INTERNAL.iter().any(|p| f.starts_with(p)) {
            return Some("alloc");
        }
        if LIBC_ENTRIES.contains(&f) || LIBC_ALLOCATING.contains(&f) {
            return Some("libc");
        }
    }
    let (ty, tr) = f.split_once(" as ").unwrap_or((f, ""));
    let path = if ty.contains("::") || tr.is_empty() {
        ty
    } else {
        tr
    };
    let krate = path.split("::").next()?.trim();
    FRAMEWORKS.iter().copied().find(|k| *k == krate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frameworks_are_named_by_crate_and_the_application_is_not() {
        assert_eq!(
            framework_of("tokio::runtime::task::harness::poll"),
            Some("tokio")
        );
        assert_eq!(
            framework_of("<hyper::proto::h1::Conn<T> as core::future::Future>::poll"),
            Some("hyper")
        );
        assert_eq!(framework_of("alloc::raw_vec::finish_grow"), Some("alloc"));
        assert_eq!(framework_of("_rjem_malloc"), Some("alloc"));
        assert_eq!(framework_of("__rust_alloc"), Some("alloc"));
        assert_eq!(framework_of("leaky_service::leak_request_buffer"), None);
        assert_eq!(
            framework_of("<leaky_service::Cache as core::ops::Drop>::drop"),
            None
        );
        assert_eq!(framework_of("0x7f00aa"), None);
        assert_eq!(framework_of("[stack not unwound]"), None);
        assert_eq!(framework_of("tokio_postgres::query"), None);
        assert_eq!(
            framework_of("<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem"),
            Some("alloc")
        );
        assert_eq!(
            framework_of("<F as axum::handler::Handler<(M,T1),S>>::call::{{closure}}"),
            Some("axum")
        );
        assert_eq!(framework_of("prof_alloc_prep"), Some("alloc"));
        assert_eq!(framework_of("start_thread"), Some("libc"));
        assert_eq!(framework_of("strdup"), Some("libc"));
        assert_eq!(framework_of("do_rallocx"), Some("alloc"));
        assert_eq!(framework_of("leaky_service::main"), None);
    }
}
