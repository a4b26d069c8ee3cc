//! Recovery after an interrupted run, planned from mount tables and the journal alone (pure:
//! `mounts::recover` carries the plan out). The container can write the journal, so a line is
//! followed only onto an autofs mount.

use crate::model::autofs::Table;
use crate::model::journal;
use crate::model::mountinfo::Dev;
use crate::show::Shown;

/// One step of a recovery. `n` is the tree's number in the staging mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The staged tree is a copy of what still stands at `to`: detach the copy.
    Drop { n: u32, to: Vec<u8> },
    /// The staged tree is the only copy: move it back onto `to`.
    PutBack { n: u32, to: Vec<u8>, what: String },
    /// It cannot go back: `to` has no autofs mount to go on (the journal is not to be
    /// trusted blindly: the container can write it).
    Keep { n: u32, to: Vec<u8>, why: &'static str },
}

/// Plans the recovery from the journal, the container's table and the staging's (`staged`,
/// where tree N is at `prefix/N`) (pure). Trees were set aside top first and go back lowest
/// first, so the journal is replayed backwards, and each check sees what the steps before it
/// will have put back.
pub fn plan_recovery(table: &Table<'_>, staged: &Table<'_>, prefix: &[u8], journal: &[u8]) -> Vec<Step> {
    let mut steps = Vec::new();
    // What each step put back: it stands there from then on.
    let mut put: Vec<(Vec<u8>, Dev, Vec<u8>)> = Vec::new();
    for (n, to) in journal::entries(journal).rev() {
        let mut at = prefix.to_vec();
        at.extend_from_slice(format!("/{n}").as_bytes());
        // Not mounted: never copied, or already put back.
        let Some(copy) = staged.top_at(&at) else { continue };
        let to = to.into_owned();
        let (dev, root) = (copy.dev, copy.root().to_vec());
        let Some(autofs) = table.autofs_at(&to) else {
            steps.push(Step::Keep { n, to, why: "no autofs mount there" });
            continue;
        };
        let stands = autofs.stack.iter().any(|m| m.dev == dev && *m.root() == *root)
            || put.iter().any(|(p, d, r)| *p == to && *d == dev && *r == root);
        if stands {
            steps.push(Step::Drop { n, to });
        } else {
            let what = format!("{} {}", Shown(&copy.fs_type), Shown(&copy.source()));
            put.push((to.clone(), dev, root));
            steps.push(Step::PutBack { n, to, what });
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layout::DIR as STAGING;
    use crate::model::mountinfo::parse;

    /// The restored container's table: autofs at /srv/data with tmpfs T1 (0:60), then T2
    /// (0:70) on top of it, and the staging mount.
    fn table(extra: &str) -> Vec<u8> {
        format!(
            "\
67 42 0:41 / / rw shared:1 - overlay ctr rw
82 67 0:48 / /run rw shared:16 - tmpfs run rw
55 67 0:62 / /srv/data rw shared:28 - autofs systemd-1 rw,fd=9,pgrp=1,direct,pipe_ino=5
90 82 0:80 / /run/autofs-restart rw - tmpfs autofs-restart rw
{extra}"
        )
        .into_bytes()
    }

    fn plan(extra: &str, journal: &str) -> Vec<Step> {
        let text = table(extra);
        let t = Table::new(parse(&text).unwrap());
        plan_recovery(&t, &t, STAGING.as_bytes(), journal.as_bytes())
    }

    const JOURNAL_BOTH: &str = "0 /srv/data\n1 /srv/data\n";

    #[test]
    fn killed_after_both_layers_went_aside() {
        let steps = plan(
            "91 90 0:70 / /run/autofs-restart/0 rw - tmpfs t2 rw\n92 90 0:60 / /run/autofs-restart/1 rw - tmpfs t1 rw\n",
            JOURNAL_BOTH,
        );
        assert_eq!(
            steps,
            [
                Step::PutBack { n: 1, to: b"/srv/data".to_vec(), what: "tmpfs t1".into() },
                Step::PutBack { n: 0, to: b"/srv/data".to_vec(), what: "tmpfs t2".into() },
            ]
        );
    }

    #[test]
    fn killed_after_copying_the_lower_layer_but_before_detaching_it() {
        // T2 is aside; T1 is staged and still stands on the autofs mount.
        let steps = plan(
            "56 55 0:60 / /srv/data rw - tmpfs t1 rw\n91 90 0:70 / /run/autofs-restart/0 rw - tmpfs t2 rw\n92 90 0:60 / /run/autofs-restart/1 rw - tmpfs t1 rw\n",
            JOURNAL_BOTH,
        );
        assert_eq!(
            steps,
            [
                Step::Drop { n: 1, to: b"/srv/data".to_vec() },
                Step::PutBack { n: 0, to: b"/srv/data".to_vec(), what: "tmpfs t2".into() },
            ]
        );
    }

    #[test]
    fn what_was_put_back_or_never_copied_is_skipped() {
        // T1 went back already; line 1 never got a copy; a torn last line is ignored.
        let steps = plan("56 55 0:60 / /srv/data rw - tmpfs t1 rw\n", "0 /srv/data\n1 /srv/data\n2 /srv/da");
        assert!(steps.is_empty(), "{steps:?}");
    }

    #[test]
    fn a_journal_line_that_points_elsewhere_is_kept_not_followed() {
        let steps = plan("91 90 0:70 / /run/autofs-restart/0 rw - tmpfs t2 rw\n", "0 /etc\n");
        assert_eq!(steps, [Step::Keep { n: 0, to: b"/etc".to_vec(), why: "no autofs mount there" }]);
    }

    #[test]
    fn escaped_paths_round_trip_through_the_journal() {
        let text = "\
67 42 0:41 / / rw shared:1 - overlay ctr rw
55 67 0:62 / /srv/my\\040data rw shared:28 - autofs systemd-1 rw,fd=9,pgrp=1,direct,pipe_ino=5
90 67 0:80 / /run/autofs-restart rw - tmpfs autofs-restart rw
91 90 0:70 / /run/autofs-restart/0 rw - tmpfs t2 rw
";
        let t = Table::new(parse(text.as_bytes()).unwrap());
        let journal = journal::line(0, b"/srv/my data");
        let steps = plan_recovery(&t, &t, STAGING.as_bytes(), &journal);
        assert!(matches!(&steps[..], [Step::PutBack { to, .. }] if to == b"/srv/my data"), "{steps:?}");
    }

    /// A namespace of our own: its table holds only the staging tmpfs (root) and the trees.
    fn plan_ns(extra: &str, staged: &str, journal: &str) -> Vec<Step> {
        let text = table(extra);
        let t = Table::new(parse(&text).unwrap());
        let staged = format!("300 299 0:90 / / rw - tmpfs autofs-restart rw\n{staged}").into_bytes();
        let s = Table::new(parse(&staged).unwrap());
        plan_recovery(&t, &s, b"", journal.as_bytes())
    }

    #[test]
    fn in_a_namespace_of_ours_copies_of_what_still_stands_are_dropped() {
        // Whatever a run got to, a copy whose original stands anywhere in the stack is a
        // duplicate.
        let steps = plan_ns(
            "56 55 0:60 / /srv/data rw - tmpfs t1 rw\n57 56 0:70 / /srv/data rw - tmpfs t2 rw\n",
            "301 300 0:70 / /0 rw - tmpfs t2 rw\n302 300 0:60 / /1 rw - tmpfs t1 rw\n",
            JOURNAL_BOTH,
        );
        let to = b"/srv/data".to_vec();
        assert_eq!(steps, [Step::Drop { n: 1, to: to.clone() }, Step::Drop { n: 0, to }]);
    }

    #[test]
    fn in_a_namespace_of_ours_the_top_goes_back_on_the_lowest_that_still_stands() {
        let steps = plan_ns(
            "56 55 0:60 / /srv/data rw - tmpfs t1 rw\n",
            "301 300 0:70 / /0 rw - tmpfs t2 rw\n302 300 0:60 / /1 rw - tmpfs t1 rw\n",
            JOURNAL_BOTH,
        );
        let to = b"/srv/data".to_vec();
        assert_eq!(steps, [Step::Drop { n: 1, to: to.clone() }, Step::PutBack { n: 0, to, what: "tmpfs t2".into() }]);
    }

    #[test]
    fn in_a_namespace_of_ours_after_the_restart_both_go_back_lowest_first() {
        let steps =
            plan_ns("", "301 300 0:70 / /0 rw - tmpfs t2 rw\n302 300 0:60 / /1 rw - tmpfs t1 rw\n", JOURNAL_BOTH);
        let to = b"/srv/data".to_vec();
        assert_eq!(
            steps,
            [
                Step::PutBack { n: 1, to: to.clone(), what: "tmpfs t1".into() },
                Step::PutBack { n: 0, to, what: "tmpfs t2".into() },
            ]
        );
    }
}
