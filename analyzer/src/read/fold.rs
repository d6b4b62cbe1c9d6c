//! The flamegraph as people read it by default: each run of framework
//! frames (the standard library, tokio, hyper, axum, tower, futures, the
//! allocator: [`heaptide_wire::pprof::framework_of`]) folded into one
//! frame that names them, and the first application frame above each
//! allocation marked with a ▶, so that a leak's stack reads as the
//! application's own calls. `frames=all` shows every frame; downloads are
//! never folded.

use std::collections::{HashMap, HashSet};

use heaptide_wire::pprof::framework_of;

/// The mark put before an application frame that is the nearest to an
/// allocation in some stack: every frame of that name carries it, so that
/// no box is split between marked and unmarked copies.
pub(crate) const APP_MARK: &str = "\u{25b6}\u{a0}";

/// Folds each of `texts` (folded stacks: root first, `;`-separated, a
/// count after the last space; spaces in names are no-break spaces, as
/// `query::folded_stack` writes them), and marks the application frames
/// nearest an allocation in any of them, alike in all: the two sides of a
/// differential flamegraph must name their frames the same. Stacks that
/// fold alike are added up, in the order they first appear.
pub(crate) fn fold_frameworks<const N: usize>(texts: [String; N]) -> [String; N] {
    let mut marked: HashSet<String> = HashSet::new();
    let folded = texts.map(|text| {
        text.lines()
            .filter_map(|line| {
                let (stack, n) = line.rsplit_once(' ')?;
                let n = n.parse::<i64>().ok()?;
                let (frames, app) = fold_stack(stack);
                marked.extend(app);
                Some((frames, n))
            })
            .collect::<Vec<_>>()
    });
    folded.map(|stacks| marked_text(stacks, &marked))
}

/// Folded stacks as text, the `marked` frames marked, alike stacks added up.
fn marked_text(stacks: Vec<(Vec<String>, i64)>, marked: &HashSet<String>) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut counts: HashMap<String, i64> = HashMap::new();
    for (frames, n) in stacks {
        let stack = frames
            .iter()
            .map(|f| match marked.contains(f) {
                true => format!("{APP_MARK}{f}"),
                false => f.clone(),
            })
            .collect::<Vec<_>>()
            .join(";");
        match counts.get_mut(&stack) {
            Some(c) => *c += n,
            None => {
                counts.insert(stack.clone(), n);
                order.push(stack);
            }
        }
    }
    order
        .into_iter()
        .map(|stack| format!("{stack} {}\n", counts[&stack]))
        .collect()
}

/// One stack folded, and its application frame nearest the leaf.
fn fold_stack(stack: &str) -> (Vec<String>, Option<String>) {
    let mut out: Vec<String> = Vec::new();
    // The current run of framework frames: its crates in order, and length.
    let mut run: (Vec<&'static str>, usize) = (Vec::new(), 0);
    let mut app = None;
    for frame in stack.split(';') {
        match framework_of(&frame.replace('\u{a0}', " ")) {
            Some(krate) => {
                if !run.0.contains(&krate) {
                    run.0.push(krate);
                }
                run.1 += 1;
                if run.1 == 1 {
                    out.push(frame.to_owned());
                }
            }
            None => {
                close(&mut out, &mut run);
                if !frame.starts_with('[') && !frame.starts_with("0x") {
                    app = Some(frame.to_owned());
                }
                out.push(frame.to_owned());
            }
        }
    }
    close(&mut out, &mut run);
    (out, app)
}

/// Ends a run: one frame stays itself; two or more become one frame
/// naming their crates, `[tokio, hyper]`, in place of the run's first. Not
/// their count: stacks that differ only inside a run then add up.
fn close(out: &mut [String], run: &mut (Vec<&'static str>, usize)) {
    if run.1 >= 2 {
        if let Some(last) = out.last_mut() {
            *last = format!("[{}]", run.0.join(", ")).replace(' ', "\u{a0}");
        }
    }
    *run = (Vec::new(), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framework_runs_fold_and_the_application_frame_nearest_the_leaf_is_marked() {
        let folded = "std::rt::lang_start;app::main;tokio::runtime::block_on;tokio::task::poll;<hyper::Conn\u{a0}as\u{a0}core::future::Future>::poll;app::handler;app::leak;alloc::vec::push;alloc::raw_vec::grow;__rust_alloc 300\n\
                      std::rt::lang_start;app::main;tokio::runtime::block_on;<hyper::Conn\u{a0}as\u{a0}core::future::Future>::poll;app::handler;app::leak;alloc::vec::push;_rjem_malloc 200\n\
                      app::main;0x7f00;alloc::alloc 5\n";
        let [f] = fold_frameworks([folded.to_owned()]);
        let nb = |s: &str| s.replace(' ', "\u{a0}");
        assert_eq!(
            f,
            format!(
                "std::rt::lang_start;{APP_MARK}app::main;{};app::handler;{APP_MARK}app::leak;[alloc] 500\n{APP_MARK}app::main;0x7f00;alloc::alloc 5\n",
                nb("[tokio, hyper]"),
            )
        );
    }
}
