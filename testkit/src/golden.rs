//! Golden files, as inferno keeps them: the output is compared with a file
//! under the crate's `tests/golden/`, a mismatch fails with a unified diff,
//! and `HEAPTIDE_BLESS=1` rewrites the file after a reviewed change.

use std::path::Path;

/// The variable that blesses a changed output.
pub const BLESS: &str = "HEAPTIDE_BLESS";

/// Compares `actual` with `<crate_dir>/tests/golden/<name>`; pass
/// `env!("CARGO_MANIFEST_DIR")` as `crate_dir`.
pub fn assert_golden(crate_dir: &str, name: &str, actual: &str) {
    let path = Path::new(crate_dir).join("tests/golden").join(name);
    if std::env::var_os(BLESS).is_some() {
        std::fs::write(&path, actual)
            .unwrap_or_else(|e| panic!("blessing {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; bless it with {BLESS}=1", path.display()));
    if expected != actual {
        let diff = similar::TextDiff::from_lines(&expected, actual)
            .unified_diff()
            .context_radius(3)
            .header("golden", "actual")
            .to_string();
        panic!(
            "{name} differs from its golden file; if the change is intended, bless it with {BLESS}=1\n{diff}"
        );
    }
}

/// Compares `actual` with the part of the document at `path` between the
/// line `<!-- generated: NAME -->` and the line `<!-- /generated -->`, as
/// [`assert_golden`] compares a file: a generated table inside prose.
pub fn assert_doc_section(path: &Path, name: &str, actual: &str) {
    let begin = format!("<!-- generated: {name} -->\n");
    let end = "<!-- /generated -->";
    let doc =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let start = doc
        .find(&begin)
        .unwrap_or_else(|| panic!("{} has no line {begin:?}", path.display()))
        + begin.len();
    let stop = start
        + doc[start..]
            .find(end)
            .unwrap_or_else(|| panic!("{} has no {end:?} after {name}", path.display()));
    let expected = &doc[start..stop];
    if expected == actual {
        return;
    }
    if std::env::var_os(BLESS).is_some() {
        let blessed = format!("{}{actual}{}", &doc[..start], &doc[stop..]);
        std::fs::write(path, blessed)
            .unwrap_or_else(|e| panic!("blessing {}: {e}", path.display()));
        return;
    }
    let diff = similar::TextDiff::from_lines(expected, actual)
        .unified_diff()
        .context_radius(3)
        .header("document", "declaration")
        .to_string();
    panic!(
        "{}'s {name} is not what its declaration makes; bless it with {BLESS}=1\n{diff}",
        path.display()
    );
}
