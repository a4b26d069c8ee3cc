//! What a kernel release says about the autofs behaviour the fix depends on: the changes that
//! are not in every kernel from 5.x to the newest, by the release that brought them.

/// Catatonic mode wakes killable waiters: "autofs: use wake_up() instead of
/// wake_up_interruptible()". Before it, waits are answered by token (`work::tokens`).
pub const WAKES_FROM_CATATONIC: (u32, u32) = (6, 6);

/// A trigger on a private autofs mount from a mount namespace other than the superblock's
/// (where it was made, or last given a pipe) fails at once with EPERM, where it waited for the
/// master before: "autofs: don't trigger mount if it can't succeed". 6.12 has it not, Debian
/// sid's 7.2 has it (its autofs4.ko imports `vfsmount_to_propagation_flags`).
pub const REFUSES_FOREIGN_PRIVATE: (u32, u32) = (6, 19);

/// Whether a kernel release (`6.1.0-57-amd64`) is at least `version`; an unreadable one is
/// taken as old.
pub fn at_least(release: &[u8], version: (u32, u32)) -> bool {
    let text = String::from_utf8_lossy(release);
    let mut numbers = text.split(|c: char| !c.is_ascii_digit()).map(str::parse::<u32>);
    match (numbers.next(), numbers.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= version,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        assert!(!at_least(b"6.1.0-57-amd64", WAKES_FROM_CATATONIC));
        assert!(!at_least(b"5.15.0-140-generic", WAKES_FROM_CATATONIC));
        assert!(at_least(b"6.6.0", WAKES_FROM_CATATONIC));
        assert!(at_least(b"6.12.118+deb13-amd64", WAKES_FROM_CATATONIC));
        assert!(!at_least(b"6.12.118+deb13-amd64", REFUSES_FOREIGN_PRIVATE));
        assert!(at_least(b"7.2.13+deb14-amd64", REFUSES_FOREIGN_PRIVATE));
        assert!(at_least(b"10.0", WAKES_FROM_CATATONIC));
        assert!(!at_least(b"", WAKES_FROM_CATATONIC));
        assert!(!at_least(b"linux", WAKES_FROM_CATATONIC));
    }
}
