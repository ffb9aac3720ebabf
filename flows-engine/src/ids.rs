//! Identifiers: prefixed, time-sortable (UUIDv7) ids such as `run_0190f1c2…`.

use uuid::Uuid;

/// A new time-ordered id with a type prefix (`run`, `evt`, `dlv`, ...). Ids of one prefix sort by
/// creation time, which the run list's cursor relies on.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::now_v7().simple())
}

/// Whether `s` is an id of the given prefix (so a wrong id is a 404/400, never a database error).
pub fn is_id(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_sortable() {
        let a = new_id("run");
        let b = new_id("run");
        assert!(is_id("run", &a), "{a}");
        assert!(!is_id("evt", &a));
        assert!(a < b);
    }
}
