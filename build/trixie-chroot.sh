# Sourced by check-msrv, check-musl and check-deb: a Debian 13 chroot made with debootstrap
# (its rustc needs its own glibc), kept between runs in MSRV_ROOT (default
# /var/tmp/autofs-restart-msrv). Root.
#
#   chroot_ready PACKAGE...   installs what the chroot lacks of these; mounts its /proc and
#                             /dev and empties its /work, both undone at exit
#   chroot_trust_ca          cargo in the chroot trusts the CA this machine does (behind a
#                             TLS-inspecting proxy it is only in this machine's store), for
#                             chroot_user's fetches from crates.io
#   chroot_source DIR         the files of this work tree that git does not ignore, into DIR
#   chroot_user COMMAND       runs COMMAND (sh -c) there as nobody, in a bare environment plus
#                             CHROOT_ENV, with /work as home
root=${MSRV_ROOT:-/var/tmp/autofs-restart-msrv}
chroot_mounted=()
chroot_cleanup() {
    for ((i = ${#chroot_mounted[@]} - 1; i >= 0; i--)); do umount -l "${chroot_mounted[$i]}" 2>/dev/null || true; done
    rm -rf "$root/work"
}
chroot_ready() {
    [ "$(id -u)" = 0 ] || fail "needs root (debootstrap, chroot)"
    if ! chroot "$root" sh -c "dpkg -s $*" >/dev/null 2>&1; then
        command -v debootstrap >/dev/null || fail "needs debootstrap (apt-get install debootstrap)"
        [ -x "$root/usr/bin/apt-get" ] || debootstrap --variant=minbase trixie "$root" http://deb.debian.org/debian >/dev/null
        chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    fi
    trap chroot_cleanup EXIT
    for fs in proc dev; do
        mkdir -p "$root/$fs"
        if [ "$fs" = proc ]; then mount -t proc proc "$root/proc"; else mount --bind /dev "$root/dev"; fi
        chroot_mounted+=("$root/$fs")
    done
    rm -rf "$root/work" && mkdir -p "$root/work" && chown nobody: "$root/work"
}
chroot_trust_ca() {
    local ca
    for ca in "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
        if [ -n "$ca" ] && [ -f "$ca" ]; then cp "$ca" "$root/work/ca.crt" && CHROOT_ENV=CARGO_HTTP_CAINFO=/work/ca.crt && return; fi
    done
}
chroot_source() {
    mkdir -p "$1"
    git ls-files -z --cached --others --exclude-standard | xargs -0 cp -P --parents -t "$1"
    chown -R nobody: "$1"
}
chroot_user() {
    # shellcheck disable=SC2086 # CHROOT_ENV: NAME=VALUE words
    chroot --userspec=nobody:nogroup "$root" env -i PATH=/usr/bin:/bin HOME=/work CARGO_HOME=/work/cargo-home \
        ${CHROOT_ENV:-} sh -c "$1"
}
