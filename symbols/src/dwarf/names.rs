//! Names for inlined functions. DWARF gives them without their module
//! path (and, in `line-tables-only` builds, with no linkage name to
//! recover it), so each is qualified by the module its source file is in.

/// An inlined function's name, qualified by the module its file is in,
/// without generic arguments: `alloc::raw_vec::with_capacity_in`.
pub(crate) fn qualified(short: &str, file: &str) -> String {
    let bare = strip_generics(short);
    // A linkage name is already a full path; `__rust_alloc` and its kin
    // are the compiler's shims, named alike in every crate.
    if bare.contains("::") || bare.starts_with("__") {
        return bare;
    }
    match module_of(file) {
        Some(m) => format!("{m}::{bare}"),
        None => bare,
    }
}

/// `crate::module::path` of a Rust source file, from where the standard
/// library, registry crates and workspace crates keep their sources.
fn module_of(file: &str) -> Option<String> {
    let file = file.strip_suffix(".rs")?;
    let (krate, rest) = if let Some((_, after)) = file.split_once("/library/") {
        let (krate, rest) = after.split_once("/src/")?;
        (krate.to_owned(), rest)
    } else {
        let (before, rest) = file.rsplit_once("/src/")?;
        let dir = before.rsplit('/').next()?;
        // A registry crate's directory is `name-1.2.3`.
        let name = match dir.rsplit_once('-') {
            Some((n, v)) if v.starts_with(|c: char| c.is_ascii_digit()) => n,
            _ => dir,
        };
        (name.replace('-', "_"), rest)
    };
    let mut parts: Vec<&str> = rest.split('/').collect();
    if matches!(parts.last(), Some(&("mod" | "lib" | "main"))) {
        parts.pop();
    }
    let mut path = krate;
    for p in parts.into_iter().filter(|p| !p.is_empty()) {
        path.push_str("::");
        path.push_str(p);
    }
    Some(path)
}

/// `name` without generic arguments: `Vec<T>::push` and the turbofish
/// `do_call::<F, R>` lose them, but a qualified path keeps its angle
/// brackets, `<F as core::ops::FnOnce>::call_once`, which would otherwise
/// read as a bare `::call_once`.
fn strip_generics(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    // For each `<` open: whether it is kept (a qualified path).
    let mut open: Vec<bool> = Vec::new();
    for c in name.chars() {
        let shown = open.iter().all(|k| *k);
        match c {
            '<' => {
                // A path starts with `<` at the start, or inside another
                // qualified path's opening; anything else is generics.
                let kept = shown && (out.is_empty() || out.ends_with('<') || out.ends_with(' '));
                if shown && !kept && out.ends_with("::") {
                    out.truncate(out.len() - 2);
                }
                if kept {
                    out.push(c);
                }
                open.push(kept);
            }
            // The guard closes the bracket whether it is shown or not.
            '>' if open.pop().unwrap_or(false) && open.iter().all(|k| *k) => out.push(c),
            '>' => {}
            _ if shown => out.push(c),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inlined_names_are_qualified_by_their_file() {
        assert_eq!(
            qualified(
                "with_capacity_in<u8, alloc::alloc::Global>",
                "/rustc/abc/library/alloc/src/raw_vec/mod.rs"
            ),
            "alloc::raw_vec::with_capacity_in"
        );
        assert_eq!(
            qualified(
                "intern<str>",
                "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/internment-0.8.6/src/intern.rs"
            ),
            "internment::intern::intern"
        );
        assert_eq!(
            qualified(
                "leak_request_buffer",
                "/src/app/examples/leaky-service/src/main.rs"
            ),
            "leaky_service::leak_request_buffer"
        );
        assert_eq!(qualified("{closure#0}<T>", "weird.c"), "{closure#0}");
        assert_eq!(
            qualified(
                "<F as core::ops::function::FnOnce<Args>>::call_once",
                "library/core/src/ops/function.rs"
            ),
            "<F as core::ops::function::FnOnce>::call_once"
        );
        assert_eq!(
            qualified(
                "<alloc::vec::Vec<T, A> as alloc::vec::spec_extend::SpecExtend<T, I>>::spec_extend",
                ""
            ),
            "<alloc::vec::Vec as alloc::vec::spec_extend::SpecExtend>::spec_extend"
        );
        assert_eq!(
            qualified("do_call::<F, R>", "/rustc/abc/library/std/src/panicking.rs"),
            "std::panicking::do_call"
        );
        assert_eq!(
            qualified(
                "with_budget<core::task::poll::Poll<()>>",
                "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tokio-1.47.1/src/task/coop/mod.rs"
            ),
            "tokio::task::coop::with_budget"
        );
        assert_eq!(
            qualified("__rust_alloc", "/src/app/agent/src/lib.rs"),
            "__rust_alloc"
        );
    }
}
