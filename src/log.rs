//! What a run says on stderr, where CRIU keeps it in its log: one line per unit, daemon or
//! finding, and with `-v` each step. An error of the run itself is not said here but returned,
//! and printed once by `main`.

pub struct Log {
    pub verbose: bool,
}

impl Log {
    pub fn say(&self, msg: std::fmt::Arguments<'_>) {
        eprintln!("autofs-restart: {msg}");
    }

    pub fn step(&self, msg: std::fmt::Arguments<'_>) {
        if self.verbose {
            self.say(msg);
        }
    }
}
