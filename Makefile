# autofs-restart: `make` builds $(BIN), one static executable. Every knob a packager has is
# described in PACKAGING.md.
CARGO ?= cargo
RUSTC ?= rustc
export RUSTC
# Passed to every cargo call that builds. A build against system crates (no Cargo.lock, or
# another one) passes its own, such as CARGOFLAGS=--offline.
CARGOFLAGS ?= --locked
# ARCH=arm64, armhf, ppc64el, s390x or riscv64 (Debian's names): a static binary for that
# architecture, cross-built with Debian's Rust and cross compiler (its libstd-rust-dev:ARCH,
# gcc-GNU-TYPE and libc6-dev-ARCH-cross), in target/ARCH. `make check-cross` builds each and runs
# their tests under qemu-user.
ARCH ?=
# Each: Rust's target, GNU's type, QEMU's name (qemu-user runs the tests there).
cross_arm64 := aarch64-unknown-linux-gnu aarch64-linux-gnu aarch64
cross_armhf := armv7-unknown-linux-gnueabihf arm-linux-gnueabihf arm
cross_ppc64el := powerpc64le-unknown-linux-gnu powerpc64le-linux-gnu ppc64le
cross_s390x := s390x-unknown-linux-gnu s390x-linux-gnu s390x
cross_riscv64 := riscv64gc-unknown-linux-gnu riscv64-linux-gnu riscv64
ifneq ($(ARCH),)
ifeq ($(cross_$(ARCH)),)
$(error ARCH=$(ARCH): not one of arm64 armhf ppc64el s390x riscv64)
endif
TARGET := $(word 1,$(cross_$(ARCH)))
GNU_TYPE := $(word 2,$(cross_$(ARCH)))
STRIP ?= $(GNU_TYPE)-strip
CROSS_RUSTFLAGS := -C linker=$(GNU_TYPE)-gcc
CARGO_TARGET_DIR ?= $(CURDIR)/target/$(ARCH)
export CARGO_TARGET_DIR
endif
# Where cargo builds: its default, or CARGO_TARGET_DIR (out of tree; the source tree may then
# be read-only). The binary is $(BIN).
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
BIN := $(TARGET_DIR)/autofs-restart
# A musl binary where no musl standard library is installed (Debian's rustc): BUILD_STD=1
# builds one from the compiler's own source (rust-src) with cargo's -Zbuild-std, its crates
# from crates.io, and links with musl-gcc (musl-tools) and LLVM's libunwind (libunwind-19-dev).
# STD_FEATURES: the standard library's features, without its backtrace symbolizer (a stripped
# binary has no symbols for it). Adding panic_immediate_abort saves 104 KiB more and loses the
# line a panic prints (DESIGN.md).
BUILD_STD ?= 0
STD_FEATURES ?= std_detect_file_io,std_detect_dlsym_getauxval,optimize_for_size
MUSL_CC ?= musl-gcc
# The Rust target: the building compiler's musl twin when its standard library is installed
# (or BUILD_STD=1), else the host; found only when something is built. TARGET=... chooses instead.
TARGET ?= $(shell build/target $(if $(filter 1,$(BUILD_STD)),musl))
# Static, and a PIE with full RELRO, given to the final crate alone (`cargo rustc -- ...`): so
# RUSTFLAGS, CARGO_ENCODED_RUSTFLAGS or a cargo config of the packager's all stay in force.
STATIC_RUSTFLAGS := -C target-feature=+crt-static -C relocation-model=pie -C link-arg=-Wl,-z,relro,-z,now
# The paths of the build out of the binary (the source tree with its vendored crates, the cargo
# home): the same bytes from any path. For every crate: added to the packager's flags, where
# they are, never in their place.
CARGO_HOME ?= $(HOME)/.cargo
REMAP := --remap-path-prefix=$(CURDIR)=/autofs-restart --remap-path-prefix=$(CARGO_HOME)=/cargo
# The result is stripped; STRIP= keeps the symbols and the debug information the profile or the
# packager's flags asked for (for -dbgsym and debuginfo packages).
STRIP ?= strip
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

empty :=
space := $(empty) $(empty)
unit_separator := $(shell printf '\037')
ifneq ($(origin CARGO_ENCODED_RUSTFLAGS),undefined)
BUILD_ENV = CARGO_ENCODED_RUSTFLAGS='$(CARGO_ENCODED_RUSTFLAGS)$(if $(CARGO_ENCODED_RUSTFLAGS),$(unit_separator))$(subst $(space),$(unit_separator),$(REMAP))'
else ifneq ($(origin RUSTFLAGS),environment)
# No RUSTFLAGS of the packager's: a cargo config's build.rustflags is joined with this.
BUILD_CONFIG = --config 'build.rustflags=[$(subst $(space),$(comma),$(patsubst %,"%",$(REMAP)))]'
else
BUILD_ENV = RUSTFLAGS='$(RUSTFLAGS) $(REMAP)'
endif
comma := ,
ifeq ($(BUILD_STD),1)
STD_CARGOFLAGS = -Zbuild-std=std,panic_abort -Zbuild-std-features=$(STD_FEATURES)
STD_RUSTFLAGS = -C linker=$(MUSL_CC) -C link-self-contained=no -L '$(TARGET_DIR)/musl-unwind'
export MUSL_CC
endif

# Where `make install` puts things: the binary where CRIU's scripts live, a link to it on PATH,
# the man page in section 8, the licences, NEWS and a CRIU configuration example in the
# documentation.
PREFIX ?= /usr/local
LIBEXECDIR ?= $(PREFIX)/libexec
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/autofs-restart
SCRIPTDIR = $(LIBEXECDIR)/criu/scripts
# Where set-ups name CRIU's old script, for install-compat: Debian 12's criu package has it in
# /usr/lib/criu/scripts, Debian 13's and Fedora's in /usr/libexec/criu/scripts.
COMPATDIR ?= $(SCRIPTDIR)
DOCS := README.md MANUAL.md NEWS LICENSE-MIT LICENSE-APACHE

# The container tests need root and the kernel's autofs; CONTAINER_TESTS=0 leaves them out of
# `make test` (a build chroot), where cargo lists them as ignored.
CONTAINER_TESTS ?= 1

.PHONY: all install install-compat uninstall check test test-one test-newest lint check-man check-install check-packaging \
	check-msrv check-musl check-cross cross-names check-deb bench fuzz demo dist clean FORCE
.DELETE_ON_ERROR:
all: $(BIN)

# Built, checked, then put in place: a binary that fails the static check is never left where
# `make install` would take it.
$(BIN): Cargo.toml $(wildcard Cargo.lock) $(shell find src -name '*.rs') $(TARGET_DIR)/build-as
	@set -e; target='$(TARGET)'; out='$(TARGET_DIR)'/$$target/release/autofs-restart; \
	echo "building for $$target"; \
	$(if $(filter 1,$(BUILD_STD)),build/musl-unwind '$(TARGET_DIR)/musl-unwind'; RUSTC_BOOTSTRAP=1) \
	$(BUILD_ENV) $(CARGO) rustc $(CARGOFLAGS) $(BUILD_CONFIG) $(STD_CARGOFLAGS) --release --bin autofs-restart \
	    --target $$target -- $(STATIC_RUSTFLAGS) $(STD_RUSTFLAGS) $(CROSS_RUSTFLAGS); \
	build/check-static "$$out"; \
	rm -f '$@.new'; \
	if [ -n '$(STRIP)' ]; then $(STRIP) -o '$@.new' "$$out"; else cp "$$out" '$@.new'; fi; \
	mv '$@.new' '$@'

# What the binary is built as: another target or standard library rebuilds it, so that
# `make install` takes what its own knobs say (BUILD_STD=1 there too).
$(TARGET_DIR)/build-as: FORCE
	@mkdir -p '$(TARGET_DIR)'; echo 'TARGET=$(TARGET)$(if $(filter 1,$(BUILD_STD)), BUILD_STD=1 STD_FEATURES=$(STD_FEATURES))' >'$@.new'; \
	if cmp -s '$@.new' '$@'; then rm '$@.new'; else mv '$@.new' '$@'; fi
FORCE:

CHANGED_SINCE_BUILD = $(firstword $(shell find Cargo.toml $(wildcard Cargo.lock) src -newer '$(BIN)' 2>/dev/null))
# Installs what `make` built and never builds: under sudo, PATH is secure_path, without the
# cargo and rustc of rustup, and a build there would fail (or build something else).
install:
	$(if $(wildcard $(BIN)),,$(error install: nothing built at $(BIN): run make first, as yourself (sudo's PATH has no cargo)))
	$(if $(CHANGED_SINCE_BUILD),$(error install: $(CHANGED_SINCE_BUILD) changed after $(BIN) was built: run make again first, as yourself))
	install -D -m 0755 $(BIN) $(DESTDIR)$(SCRIPTDIR)/autofs-restart
	install -d -m 0755 $(DESTDIR)$(SBINDIR)
	ln -sfr $(DESTDIR)$(SCRIPTDIR)/autofs-restart $(DESTDIR)$(SBINDIR)/autofs-restart
	install -d -m 0755 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR)
	sed 's|/usr/libexec/criu/scripts|$(SCRIPTDIR)|g; s|/usr/sbin/autofs-restart|$(SBINDIR)/autofs-restart|g' build/autofs-restart.8 >$(DESTDIR)$(MANDIR)/man8/autofs-restart.8
	chmod 0644 $(DESTDIR)$(MANDIR)/man8/autofs-restart.8
	install -m 0644 $(DOCS) $(DESTDIR)$(DOCDIR)/
	sed 's|@SCRIPTDIR@|$(SCRIPTDIR)|' build/criu.conf.example >$(DESTDIR)$(DOCDIR)/criu.conf.example
	chmod 0644 $(DESTDIR)$(DOCDIR)/criu.conf.example
	@echo 'installed; for CRIU to run it at every restore, put this line in /etc/criu/default.conf:'
	@echo 'action-script $(SCRIPTDIR)/autofs-restart'

# For set-ups that name CRIU's old script: the same binary under that name, in COMPATDIR. The
# distribution's script found there is kept beside it, as .orig, and uninstall puts it back.
COMPAT = $(DESTDIR)$(COMPATDIR)/systemd-autofs-restart.sh
install-compat: install
	install -d -m 0755 $(DESTDIR)$(COMPATDIR)
	if [ -f $(COMPAT) ] && [ ! -L $(COMPAT) ] && [ ! -e $(COMPAT).orig ]; then mv $(COMPAT) $(COMPAT).orig; fi
	ln -sfn $(if $(filter $(COMPATDIR),$(SCRIPTDIR)),autofs-restart,$(SCRIPTDIR)/autofs-restart) $(COMPAT)

uninstall:
	rm -f $(DESTDIR)$(SCRIPTDIR)/autofs-restart
	if [ -L $(DESTDIR)$(SBINDIR)/autofs-restart ]; then rm -f $(DESTDIR)$(SBINDIR)/autofs-restart; fi
	if [ -L $(COMPAT) ]; then rm -f $(COMPAT); fi
	if [ -e $(COMPAT).orig ] && [ ! -e $(COMPAT) ]; then mv $(COMPAT).orig $(COMPAT); fi
	rm -f $(DESTDIR)$(MANDIR)/man8/autofs-restart.8
	rm -f $(addprefix $(DESTDIR)$(DOCDIR)/,$(DOCS) criu.conf.example)
	-rmdir $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SCRIPTDIR) $(DESTDIR)$(SBINDIR) 2>/dev/null

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy $(CARGOFLAGS) --all-targets -- -D warnings

# What needs no root: lint, the unit tests and the black-box tests of the command line. The
# tests that need root and the kernel's autofs are #[ignore]d there (cargo lists them).
# LINT=0 leaves fmt and clippy out (a distribution's build, whose newer clippy may find new lints).
LINT ?= 1
check: $(if $(filter 1,$(LINT)),lint)
	$(CARGO) test $(CARGOFLAGS)

# Everything: the above, the man page, the install tree, and the tests in throwaway
# containers (root, the kernel's autofs; see HACKING.md), which fail rather than skip. Where this
# machine's kernel has no autofs (or VM=1), those run in VMs on each kernel of KERNELS
# (default: Debian 12's, Debian 13's and the newest Debian has). MUSL_ON=KERNEL: the musl
# binary of `make check-musl` is the one under test on that kernel (CI: trixie).
MUSL_ON ?=
SUITE = AUTOFS_RESTART_BIN=$(BIN) CARGO='$(CARGO)' CARGOFLAGS='$(CARGOFLAGS)' CONTAINER_TESTS=$(CONTAINER_TESTS) \
	$(if $(MUSL_ON),BIN_ON='$(MUSL_ON)=$(TARGET_DIR)/musl/autofs-restart') tests/harness/suite
test: $(BIN) lint check-man check-install
	$(SUITE)

# Every test on the newest kernel Debian's unstable archive has (in a VM, also where this
# machine's kernel has autofs).
test-newest: $(BIN)
	VM=1 KERNELS=sid $(SUITE)

# The short loop: one test binary, or some of its tests, on one kernel (natively where this
# machine's kernel has autofs and VM is not 1): make test-one TEST='systemd a_stack' KERNEL=bookworm
KERNEL ?= trixie
test-one: $(BIN)
	@[ -n '$(TEST)' ] || { echo "test-one: say which: TEST='BINARY [FILTER...]'" >&2; exit 2; }
	KERNELS='$(KERNEL)' $(SUITE) $(TEST)

# The man page renders without a warning and names this version.
check-man:
	@w=$$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l build/autofs-restart.8 2>&1 >/dev/null); \
	    if [ -n "$$w" ]; then echo "$$w" >&2; exit 1; fi
	@grep -q '"autofs-restart $(VERSION)"' build/autofs-restart.8 || \
	    { echo "check-man: build/autofs-restart.8 does not say version $(VERSION)" >&2; exit 1; }

check-install: $(BIN)
	BIN=$(BIN) build/check-install

# As packagers build: their flags kept, same bytes from two paths, out of tree on a read-only
# source, a failed static check leaving nothing, `make` as a user with Rust in their home then
# `sudo make install`, from `make dist`.
check-packaging:
	build/check-packaging

# Built and unit-tested with the oldest Rust of rust-version: Debian 13's, in a chroot.
check-msrv:
	build/check-msrv

# The musl binary of BUILD_STD=1, built in a Debian 13 chroot: static, its unit tests run;
# left at $(TARGET_DIR)/musl/autofs-restart for `make test MUSL_ON=KERNEL`.
check-musl:
	build/check-musl

# Static binaries for CROSS_ARCHES (default: every other architecture Debian builds criu for),
# each built with `make ARCH=...` in a Debian 13 chroot, its unit tests and the tests that
# need no root run under qemu-user; left at target/ARCH/autofs-restart.
CROSS_ARCHES ?= arm64 armhf ppc64el s390x riscv64
check-cross:
	build/check-cross $(CROSS_ARCHES)

# ARCH's Rust target and GNU type, from the one table above: what build/check-cross asks.
cross-names:
	@[ -n '$(ARCH)' ] || { echo "cross-names: say which: ARCH=..." >&2; exit 2; }
	@echo $(cross_$(ARCH))

# The Debian package of build/debian, built in a Debian 13 chroot, lintian-clean, installed
# over criu's script, run and removed; beside it, cross-built for DEB_CROSS (default arm64).
check-deb:
	build/check-deb

# Cost of the fix against a bare systemctl restart, as containers grow; writes build/bench-results.md.
bench: $(BIN)
	BIN=$(BIN) build/bench

# The parsers of what the container controls (mountinfo, the journal), fed mutated real tables
# for FUZZ_SECONDS, with overflow checks on; FUZZ_SEED replays a run.
FUZZ_SECONDS ?= 60
fuzz:
	CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true \
	    $(CARGO) run $(CARGOFLAGS) --release --example fuzz-mountinfo -- $(FUZZ_SECONDS) $(FUZZ_SEED)

demo: $(BIN)
	tests/harness/demo $(BIN)

# A source tarball with every crate it needs vendored (but the Windows-only ones, emptied) and
# the cargo configuration that builds from them offline: $(TARGET_DIR)/autofs-restart-VERSION.tar.gz.
dist:
	build/dist '$(TARGET_DIR)' $(VERSION)

clean:
	$(CARGO) clean
