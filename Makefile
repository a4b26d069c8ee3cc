# autofs-restart: `make` builds target/autofs-restart, one static executable.
CARGO ?= cargo
TARGET := $(shell build/target)
# Static and not position-independent: a plain executable with no interpreter, for glibc and
# musl alike. Passed with --target, so build scripts (none today) would stay dynamic.
STATIC_RUSTFLAGS := -C target-feature=+crt-static -C relocation-model=static
BIN := target/autofs-restart

.PHONY: all test lint unit integration demo clean
all: $(BIN)

$(BIN): Cargo.toml Cargo.lock $(wildcard src/*.rs)
	RUSTFLAGS="$(STATIC_RUSTFLAGS)" $(CARGO) build --locked --release --target $(TARGET)
	cp target/$(TARGET)/release/autofs-restart $@
	build/check-static $@

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Unit tests, then black-box tests of the built binary; the container tests need root and
# the kernel's autofs (see README).
test: $(BIN) lint
	AUTOFS_RESTART_BIN=$(CURDIR)/$(BIN) $(CARGO) test --locked

demo: $(BIN)
	tests/harness/demo $(CURDIR)/$(BIN)

clean:
	$(CARGO) clean
