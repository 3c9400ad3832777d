//! The id that names a session in the logs (the `tether{session=…}` span).
//!
//! It must not be the seed: jitter and the generated idempotency keys derive from the
//! seed, so a log reader who knew it could predict them. The id is a random value drawn
//! once per process (the OS-keyed hasher, as for seeds, but its own draw) and a
//! process-wide counter: unique within the process, unlikely to repeat across processes,
//! and unrelated to any session's seed.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A session's log id: `{process:08x}-{n}`, where `process` is random per process and
/// `n` counts the sessions the process has started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SessionId {
    process: u32,
    n: u64,
}

impl SessionId {
    /// The next id of this process.
    pub(crate) fn next() -> Self {
        static PROCESS: OnceLock<u32> = OnceLock::new();
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let process = *PROCESS.get_or_init(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write(b"tether session id");
            // The high half: a value, not a key; nothing of a seed is in it.
            (h.finish() >> 32) as u32
        });
        SessionId {
            process,
            n: COUNT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}-{}", self.process, self.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_in_a_process_and_share_its_random_part() {
        let a = SessionId::next();
        let b = SessionId::next();
        assert_ne!(a, b);
        assert_eq!(a.process, b.process);
        assert!(b.n > a.n);
        let shown = a.to_string();
        assert_eq!(shown, format!("{:08x}-{}", a.process, a.n));
    }
}
