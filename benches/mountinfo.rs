//! Parsing speed of the mountinfo parser on a real table: `cargo bench --bench mountinfo --
//! FILE [ROUNDS]`. Prints the median, min and max time of one parse, in microseconds.

#[allow(dead_code, unused_imports)]
#[path = "../src/model/mountinfo.rs"]
mod mountinfo;
// The parser's tests, compiled here too under `cargo test --benches`, use it.
#[cfg(test)]
#[path = "../src/model/xorshift.rs"]
mod xorshift;

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let Some(file) = args.next() else {
        eprintln!("usage: cargo bench --bench mountinfo -- FILE [ROUNDS]");
        std::process::exit(2);
    };
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(200);
    let text = std::fs::read(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    let lines = mountinfo::parse(&text).expect("a mountinfo table").len();
    let mut times: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            let parsed = mountinfo::parse(std::hint::black_box(&text)).unwrap();
            std::hint::black_box(parsed.len());
            start.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!("{lines} {:.0} {:.0} {:.0}", times[times.len() / 2], times[0], times[times.len() - 1]);
}

// Where the program has it, for the parser's tests.
#[cfg(test)]
mod model {
    pub(crate) use super::xorshift;
}
