//! A mutation fuzzer for everything that reads text the container controls: the mountinfo
//! parser, the autofs option and stack analysis built on it, and the recovery planner with its
//! journal. No fuzzing framework is needed (none may be downloaded here): seeds are the real
//! tables in tests/fixtures/mountinfo, mutated at random for a bounded time.
//!
//!   cargo run --release --example fuzz-mountinfo -- [SECONDS] [SEED]
//!
//! A panic prints the seed and the input that caused it, then aborts; exit 0 means none.

#![allow(dead_code, unused_imports)]

#[path = "../src/model/autofs.rs"]
mod autofs;
#[path = "../src/model/journal.rs"]
mod journal;
#[path = "../src/model/layout.rs"]
mod layout;
#[path = "../src/model/mountinfo.rs"]
mod mountinfo;
#[path = "../src/model/recovery.rs"]
mod recovery;
#[path = "../src/model/xorshift.rs"]
mod xorshift;
// Where the program has them.
mod model {
    pub(crate) use super::{autofs, journal, layout, mountinfo, recovery, xorshift};
}
#[path = "../src/error.rs"]
mod error;
#[path = "../src/pids.rs"]
mod pids;
#[path = "../src/show.rs"]
mod show;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use xorshift::Rng;

/// The input under test, for the panic hook.
static CURRENT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Bytes that mean something to the parsers.
const TOKENS: &[&[u8]] = &[
    b" ",
    b"\n",
    b"-",
    b" - ",
    b":",
    b"\\",
    b"\\040",
    b"\\12",
    b"0",
    b"4294967295",
    b"99999999999",
    b"shared:",
    b"master:",
    b"propagate_from:",
    b"unbindable",
    b"autofs",
    b"fd=-1",
    b"pgrp=",
    b"pipe_ino=",
    b"direct",
    b"indirect",
    b"offset",
    b",",
    b"/run/autofs-restart",
    b"/run/autofs-restart/0",
    b"/srv/data",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(16) {
        let at = rng.below(input.len() + 1);
        match rng.below(7) {
            0 if at < input.len() => input[at] = rng.next() as u8,
            1 if at < input.len() => {
                let end = (at + rng.below(32)).min(input.len());
                input.drain(at..end);
            }
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                input.splice(at..at, t.iter().copied());
            }
            3 => {
                // A line from another table.
                let other = &seeds[rng.below(seeds.len())];
                let lines: Vec<&[u8]> = other.split(|&b| b == b'\n').collect();
                let line = lines[rng.below(lines.len())];
                input.splice(at..at, line.iter().copied().chain([b'\n']));
            }
            4 => {
                // A line copied within the input: duplicate ids, cycles, stacks.
                let from = rng.below(input.len() + 1);
                let end = (from + rng.below(200)).min(input.len());
                let piece = input[from..end].to_vec();
                input.splice(at..at, piece);
            }
            5 => input.truncate(at),
            _ if at < input.len() && input[at].is_ascii_digit() => input[at] = b'0' + rng.below(10) as u8,
            _ => {}
        }
    }
    input.truncate(1 << 20);
}

/// Everything that reads the text; none of it may panic or loop.
fn exercise(input: &[u8]) {
    let Ok(parsed) = mountinfo::parse(input) else { return };
    let table = autofs::Table::new(parsed);
    for a in table.autofs() {
        let _ = a.options.catatonic();
        let _ = table.top_at(&a.mount.mount_point);
        let _ = table.autofs_at(&a.mount.mount_point).map(|b| b.stack.len() + b.inside);
    }
    // The tail of the input doubles as a journal: the container can write that one too.
    let journal = &input[input.len() / 2..];
    let _ = recovery::plan_recovery(&table, &table, layout::DIR.as_bytes(), journal);
    let _ = recovery::plan_recovery(&table, &table, b"", journal);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(30);
    let seed: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64) | 1
    });
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mountinfo");
    let mut seeds: Vec<Vec<u8>> =
        std::fs::read_dir(dir).expect("the fixtures").filter_map(|e| std::fs::read(e.ok()?.path()).ok()).collect();
    seeds.sort();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let input = CURRENT.lock().map(|i| i.clone()).unwrap_or_default();
        eprintln!("fuzz-mountinfo: seed {seed}: panic on this input ({} bytes):", input.len());
        eprintln!("{}", String::from_utf8_lossy(&input).escape_debug());
        hook(info);
    }));

    let mut rng = Rng(seed);
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut runs = 0u64;
    while Instant::now() < end {
        for _ in 0..64 {
            let mut input = seeds[rng.below(seeds.len())].clone();
            mutate(&mut rng, &seeds, &mut input);
            CURRENT.lock().unwrap().clone_from(&input);
            exercise(&input);
            runs += 1;
        }
    }
    println!("fuzz-mountinfo: seed {seed}: {runs} inputs in {seconds} s, no panic");
}
