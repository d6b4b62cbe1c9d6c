//! Profiles held below the analyzer's limit on a batch.
//!
//! The analyzer refuses a batch larger than 4 MiB once decoded, and a
//! refused batch loses its profile. A heap of tens of thousands of
//! distinct stacks can exceed that, so a profile over [`MAX_PROFILE_BYTES`]
//! keeps its largest stacks and folds the others into one stack named for
//! what it stands for: the totals, and the bytes by age, are unchanged, and
//! the stacks a leak is made of are the large ones.

use std::sync::Arc;

use heaptide_wire::pprof::{Frame, ProfileSample};
use heaptide_wire::StackAges;

/// Largest profile the agent queues, as the queue counts it
/// ([`crate::queue::Item::size`]): under the analyzer's 4 MiB, with room
/// for the batch's envelope and a little of its metrics.
pub(crate) const MAX_PROFILE_BYTES: usize = 3 << 20;

/// A profile's stacks before encoding: each stack, its return addresses,
/// and the bytes by age of the stacks the age table knows.
#[derive(Debug, Clone, Default)]
pub(crate) struct Parts {
    pub stacks: Vec<ProfileSample>,
    pub addresses: Vec<Vec<u64>>,
    pub ages: Vec<StackAges>,
}

/// How many stacks to keep of `n`, for a profile of `size` bytes to come
/// under `limit`: in proportion, with a margin, since small stacks are
/// the ones that go and each stack costs about the same.
pub(crate) fn stacks_to_keep(n: usize, size: usize, limit: usize) -> usize {
    let share = limit as f64 / size.max(1) as f64;
    ((n as f64 * share * 0.85) as usize).min(n.saturating_sub(1))
}

/// `parts` with its `keep` largest stacks by bytes, and one more stack
/// holding the rest, named `[N smaller stacks, folded to fit a batch]`.
pub(crate) fn fold_smallest(parts: &Parts, keep: usize) -> Parts {
    let mut order: Vec<usize> = (0..parts.stacks.len()).collect();
    // Live bytes or bytes allocated since the previous profile, whichever
    // is larger: a stack that churns matters though nothing of it lives.
    order.sort_by_key(|&i| {
        std::cmp::Reverse(parts.stacks[i].bytes.max(parts.stacks[i].alloc_bytes))
    });
    let (kept, folded) = order.split_at(keep.min(order.len()));
    let mut out = Parts::default();
    // Old index → new, for the age rows.
    let mut new_index = vec![None; parts.stacks.len()];
    for &i in kept {
        new_index[i] = Some(out.stacks.len() as u32);
        out.stacks.push(parts.stacks[i].clone());
        out.addresses.push(parts.addresses[i].clone());
    }
    if folded.is_empty() {
        out.ages = parts.ages.clone();
        return out;
    }
    let rest = out.stacks.len() as u32;
    let name: Arc<str> = format!("[{} smaller stacks, folded to fit a batch]", folded.len()).into();
    out.stacks.push(ProfileSample {
        frames: vec![Frame::new(name, "", 0)],
        objects: folded.iter().map(|&i| parts.stacks[i].objects).sum(),
        bytes: folded.iter().map(|&i| parts.stacks[i].bytes).sum(),
        alloc_objects: folded.iter().map(|&i| parts.stacks[i].alloc_objects).sum(),
        alloc_bytes: folded.iter().map(|&i| parts.stacks[i].alloc_bytes).sum(),
    });
    out.addresses.push(Vec::new());
    let mut rest_ages = StackAges {
        sample: rest,
        bytes: Default::default(),
    };
    for row in &parts.ages {
        match new_index.get(row.sample as usize).copied().flatten() {
            Some(sample) => out.ages.push(StackAges {
                sample,
                bytes: row.bytes,
            }),
            None => {
                for (sum, b) in rest_ages.bytes.iter_mut().zip(row.bytes) {
                    *sum += b;
                }
            }
        }
    }
    if rest_ages.bytes.iter().any(|b| *b > 0) {
        out.ages.push(rest_ages);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(n: usize) -> Parts {
        Parts {
            stacks: (0..n)
                .map(|i| ProfileSample {
                    frames: vec![Frame::new(format!("f{i}"), "", 0)],
                    objects: 1,
                    bytes: 100 * (i as i64 + 1),
                    ..Default::default()
                })
                .collect(),
            addresses: (0..n).map(|i| vec![i as u64]).collect(),
            ages: (0..n)
                .map(|i| StackAges {
                    sample: i as u32,
                    bytes: [i as u64, 1, 0, 0, 0, 0, 0],
                })
                .collect(),
        }
    }

    #[test]
    fn the_largest_stacks_stay_and_the_rest_fold_with_totals_kept() {
        let p = parts(10);
        let t = fold_smallest(&p, 3);
        assert_eq!(t.stacks.len(), 4);
        let names: Vec<&str> = t.stacks.iter().map(|s| &*s.frames[0].function).collect();
        assert_eq!(
            names,
            [
                "f9",
                "f8",
                "f7",
                "[7 smaller stacks, folded to fit a batch]"
            ]
        );
        let total = |p: &Parts| p.stacks.iter().map(|s| s.bytes).sum::<i64>();
        assert_eq!(total(&t), total(&p));
        assert_eq!(t.stacks[3].objects, 7);
        assert!(t.addresses[3].is_empty());
        // Ages follow their stacks; the folded ones add up in the last row.
        let of = |sample: u32| t.ages.iter().find(|a| a.sample == sample).unwrap().bytes[0];
        assert_eq!((of(0), of(1), of(2)), (9, 8, 7));
        let last = t.ages.last().unwrap();
        assert_eq!((last.sample, last.bytes[0], last.bytes[1]), (3, 21, 7));
        let age_total = |p: &Parts| p.ages.iter().map(|a| a.bytes[1]).sum::<u64>();
        assert_eq!(age_total(&t), age_total(&p));
    }

    #[test]
    fn the_share_kept_comes_under_the_limit_and_always_folds_one() {
        assert_eq!(stacks_to_keep(1000, 2000, 1000), 425);
        assert_eq!(stacks_to_keep(10, 10, 1000), 9);
        assert_eq!(stacks_to_keep(0, 10, 1), 0);
    }
}
