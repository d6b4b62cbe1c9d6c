//! Ids of what ingest stores, from what it is: every analyzer computes the
//! same id for the same stack, process or profile, so a replayed batch or
//! one stored by two analyzers has the same rows, which the tables'
//! sorting keys fold.

use super::id63;
use heaptide_wire::pprof::Frame;

/// A stack's id, from its frames: the same frames get the same id on
/// every analyzer, without serializing them.
pub(super) fn stack_id(frames: &[Frame]) -> i64 {
    let lines: Vec<[u8; 4]> = frames.iter().map(|f| f.line.to_le_bytes()).collect();
    let parts = frames
        .iter()
        .zip(&lines)
        .flat_map(|(f, line)| [f.function.as_bytes(), f.file.as_bytes(), line.as_slice()]);
    id63(std::iter::once(&b"stack"[..]).chain(parts))
}

pub(super) fn segment_id(service: &str, instance: &str, pid: u32, start_time_ms: i64) -> i64 {
    let (pid, start) = (pid.to_le_bytes(), start_time_ms.to_le_bytes());
    id63([
        &b"segment"[..],
        service.as_bytes(),
        instance.as_bytes(),
        &pid,
        &start,
    ])
}

pub(super) fn profile_id(segment: i64, ts_ms: i64) -> i64 {
    id63([
        &b"profile"[..],
        &segment.to_le_bytes(),
        &ts_ms.to_le_bytes(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_ids_tell_frames_apart_without_serializing_them() {
        let f = |function: &str, line| Frame {
            function: function.into(),
            file: "src/a.rs".into(),
            line,
        };
        let a = stack_id(&[f("x", 1), f("y", 2)]);
        assert_eq!(a, stack_id(&[f("x", 1), f("y", 2)]));
        assert_ne!(a, stack_id(&[f("x", 1), f("y", 3)]));
        assert_ne!(a, stack_id(&[f("xy", 1)]));
        assert!(a >= 0);
    }
}
