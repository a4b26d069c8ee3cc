# autofs-restart: `make` builds target/autofs-restart, one static executable.
CARGO ?= cargo
TARGET := $(shell build/target)
# Static and not position-independent: a plain executable with no interpreter, for glibc and
# musl alike. Passed with --target, so build scripts (none today) would stay dynamic.
STATIC_RUSTFLAGS := -C target-feature=+crt-static -C relocation-model=static
BIN := target/autofs-restart
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

# Where `make install` puts things: the binary where CRIU's scripts live, the man page in section 8.
PREFIX ?= /usr/local
LIBEXECDIR ?= $(PREFIX)/libexec
MANDIR ?= $(PREFIX)/share/man
SCRIPTDIR = $(LIBEXECDIR)/criu/scripts

.PHONY: all install install-compat check test lint check-man check-install bench fuzz demo clean
all: $(BIN)

$(BIN): Cargo.toml Cargo.lock $(wildcard src/*.rs)
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --locked --release --target $(TARGET)
	cp target/$(TARGET)/release/autofs-restart $@
	build/check-static $@

install: $(BIN)
	install -D -m 0755 $(BIN) $(DESTDIR)$(SCRIPTDIR)/autofs-restart
	install -D -m 0644 build/autofs-restart.8 $(DESTDIR)$(MANDIR)/man8/autofs-restart.8

# For set-ups that name CRIU's old script: the same binary under that name.
install-compat: install
	ln -sfn autofs-restart $(DESTDIR)$(SCRIPTDIR)/systemd-autofs-restart.sh

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# What needs no root: lint, the unit tests and the black-box tests of the command line. The
# tests that need root and the kernel's autofs are #[ignore]d there (cargo lists them).
check: lint
	$(CARGO) test --locked

# Everything: the above, the man page, the install tree, and the tests in throwaway
# containers (root, the kernel's autofs; see README), which fail rather than skip.
test: $(BIN) lint check-man check-install
	AUTOFS_RESTART_BIN=$(CURDIR)/$(BIN) $(CARGO) test --locked -- --include-ignored

# The man page renders without a warning and names this version.
check-man:
	@w=$$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l build/autofs-restart.8 2>&1 >/dev/null); \
	    if [ -n "$$w" ]; then echo "$$w" >&2; exit 1; fi
	@grep -q '"autofs-restart $(VERSION)"' build/autofs-restart.8 || \
	    { echo "check-man: build/autofs-restart.8 does not say version $(VERSION)" >&2; exit 1; }

check-install: $(BIN)
	build/check-install

# Cost of the fix against a bare systemctl restart, as containers grow; writes build/bench-results.md.
bench: $(BIN)
	build/bench

# The parsers of what the container controls (mountinfo, the journal), fed mutated real tables
# for FUZZ_SECONDS, with overflow checks on; FUZZ_SEED replays a run.
FUZZ_SECONDS ?= 60
fuzz:
	CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true \
	    $(CARGO) run --release --example fuzz-mountinfo -- $(FUZZ_SECONDS) $(FUZZ_SEED)

demo: $(BIN)
	tests/harness/demo $(CURDIR)/$(BIN)

clean:
	$(CARGO) clean
