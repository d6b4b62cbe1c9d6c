//! Collections that stop growing while they are decoded: a batch that
//! lists more than the contract allows is refused at the first item past
//! the limit, before the rest is built. Every limit is a constant of the
//! wire contract (`docs/wire.md`).
//!
//! Written here because serde has no bounded collections; each is a small
//! visitor over `SeqAccess` or `MapAccess`.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error, MapAccess, SeqAccess, Visitor};

/// Metric samples per batch.
pub const MAX_SAMPLES: usize = 100_000;
/// Metrics per sample.
pub const MAX_METRICS_PER_SAMPLE: usize = 2_000;
/// Pause events per batch.
pub const MAX_PAUSES: usize = 100_000;
/// Heap profiles per batch.
pub const MAX_PROFILES: usize = 100;
/// Age rows of one profile: at most one per sample of the profile.
pub const MAX_AGE_ROWS: usize = 200_000;
/// Labels per agent.
pub const MAX_LABELS: usize = 64;
/// Objects an agent announces as sent unnamed; an agent with more
/// announces the first (the executable first) and the analyzer still asks
/// for the rest as their addresses arrive.
pub const MAX_UNNAMED_OBJECTS: usize = 64;

/// Capacity reserved up front, whatever a size hint claims.
const PREALLOCATE: usize = 1024;

/// A list of at most `N` items.
pub fn vec<'de, D, T, const N: usize>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T, const N: usize>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for V<T, N> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a list of at most {N} items")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(N).min(PREALLOCATE));
            while let Some(item) = seq.next_element()? {
                if out.len() == N {
                    return Err(A::Error::custom(format!("more than {N} items")));
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V::<T, N>(PhantomData))
}

/// A map of at most `N` entries.
pub fn map<'de, D, V, const N: usize>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct M<V, const N: usize>(PhantomData<V>);
    impl<'de, V: Deserialize<'de>, const N: usize> Visitor<'de> for M<V, N> {
        type Value = BTreeMap<String, V>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a map of at most {N} entries")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = map.next_entry()? {
                if out.len() == N {
                    return Err(A::Error::custom(format!("more than {N} entries")));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(M::<V, N>(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct Small {
        #[serde(deserialize_with = "vec::<_, _, 3>")]
        v: Vec<u8>,
        #[serde(deserialize_with = "map::<_, _, 2>")]
        m: BTreeMap<String, f64>,
    }

    #[test]
    fn past_the_limit_is_an_error_naming_it() {
        let ok: Small = serde_json::from_str(r#"{"v":[1,2,3],"m":{"a":1,"b":2}}"#).unwrap();
        assert_eq!((ok.v.len(), ok.m.len()), (3, 2));
        let e = serde_json::from_str::<Small>(r#"{"v":[1,2,3,4],"m":{}}"#).unwrap_err();
        assert!(e.to_string().contains("more than 3 items"), "{e}");
        let e = serde_json::from_str::<Small>(r#"{"v":[],"m":{"a":1,"b":2,"c":3}}"#).unwrap_err();
        assert!(e.to_string().contains("more than 2 entries"), "{e}");
    }
}
