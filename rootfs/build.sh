#!/bin/bash
# Build the root filesystems that garden runs containers from.
#
#   rootfs/build.sh [busybox|cflinuxfs4|all] [--out DIR] [--force]
#
#   busybox     tiny rootfs from Debian's busybox-static, for fast runtime tests
#   cflinuxfs4  the default stack rootfs (cflinuxfs4-compatible), Debian
#               bookworm minbase + rootfs/cflinuxfs4/packages.txt
#   all         both (the default)
#
# Outputs, in DIR (default: rootfs/out next to this script):
#   <name>/         the root filesystem as a directory
#   <name>.tar.gz   the same as a reproducible tarball (sorted, numeric owners,
#                   clamped mtimes, gzip -n)
#   <name>.stamp    sha256 of the build inputs; when it matches and both
#                   outputs exist the build is skipped ("up to date")
#
# Environment (all optional):
#   SOURCE_DATE_EPOCH       timestamp used for reproducibility (default fixed)
#   ROOTFS_MIRROR           Debian mirror URI (default: from the host's apt)
#   ROOTFS_SECURITY_MIRROR  Debian security mirror URI (default: host's apt)
#
# Needs root for cflinuxfs4 (mmdebstrap --mode=root) and to give the busybox
# rootfs its owners. Installs mmdebstrap / busybox-static with apt-get when
# they are missing. See rootfs/README.md.
set -euo pipefail

ROOTFS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SELF="$ROOTFS_DIR/build.sh"
CF_DIR="$ROOTFS_DIR/cflinuxfs4"
SUITE=bookworm
# 2024-01-01T00:00:00Z. Part of the stamp; any fixed value gives reproducible
# output for the same package versions.
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-1704067200}"
STAMP_VERSION=1

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$SELF"
}

say() { printf 'rootfs %s\n' "$*" >&2; }
die() { printf 'rootfs error: %s\n' "$*" >&2; exit 1; }

now_us() { local t=${EPOCHREALTIME/./}; printf '%s' "$((10#$t))"; }
elapsed() { # start_us -> "1.23"
    local d=$(( $(now_us) - $1 ))
    printf '%d.%02d' "$((d / 1000000))" "$(((d % 1000000) / 10000))"
}

# ---------------------------------------------------------------- arguments --
target=all
out=""
force=0
while [ $# -gt 0 ]; do
    case $1 in
        busybox | cflinuxfs4 | all) target=$1 ;;
        --out) [ $# -ge 2 ] || die "--out needs a directory"; out=$2; shift ;;
        --out=*) out=${1#--out=} ;;
        --force | -f) force=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
    shift
done
out=${out:-$ROOTFS_DIR/out}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# ---------------------------------------------------------------- cleanup --
# Temp dirs live inside $out (same filesystem, so the final rename is atomic).
# They are removed on any exit; rm never crosses into a mount point.
TMPS=()
remove_tree() {
    local d=$1 mnt
    [ -e "$d" ] || return 0
    # Unmount anything left mounted below $d (deepest first), then delete.
    while read -r mnt; do
        umount -l "$mnt" 2>/dev/null || true
    done < <(awk -v p="$d/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    rm -rf --one-file-system "$d" 2>/dev/null || rm -rf --one-file-system "$d" || true
}
cleanup() {
    local rc=$? d
    if [ "$rc" != 0 ]; then
        say "build failed (exit $rc); completed outputs and stamps were left untouched"
    fi
    for d in "${TMPS[@]+"${TMPS[@]}"}"; do remove_tree "$d"; done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One build at a time per output dir (tests may call this concurrently).
exec 9>"$out/.lock"
if ! flock -n 9; then
    say "waiting for another build in $out to finish"
    flock 9
fi

# ---------------------------------------------------------------- helpers --
apt_install() {
    local log
    log=$(mktemp)
    say "installing missing host package(s): $*"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" </dev/null >"$log" 2>&1; then
        if ! { DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" </dev/null; } >"$log" 2>&1; then
            cat "$log" >&2
            rm -f "$log"
            die "apt-get install $* failed"
        fi
    fi
    rm -f "$log"
}

sha() { sha256sum | cut -d' ' -f1; }

is_up_to_date() { # name stamp
    local name=$1 stamp=$2
    [ "$force" = 0 ] && [ -f "$out/$name.stamp" ] && [ -d "$out/$name" ] &&
        [ -f "$out/$name.tar.gz" ] && [ "$(cat "$out/$name.stamp")" = "$stamp" ]
}

# Move freshly built outputs into place. The stamp is removed first and
# written last, so an interruption never leaves outputs that look complete.
install_outputs() { # name tmpdir stamp   (tmpdir holds root/ and root.tar.gz)
    local name=$1 tmp=$2 stamp=$3 old="$out/.$1.old.$$"
    rm -f "$out/$name.stamp"
    if [ -e "$out/$name" ]; then
        mv "$out/$name" "$old"
        TMPS+=("$old")
    fi
    mv "$tmp/root" "$out/$name"
    mv "$tmp/root.tar.gz" "$out/$name.tar.gz"
    printf '%s\n' "$stamp" >"$tmp/stamp"
    mv "$tmp/stamp" "$out/$name.stamp"
    remove_tree "$old"
}

make_tarball() { # dir file
    tar --create --file=- --directory="$1" --format=gnu --sort=name \
        --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" --clamp-mtime . |
        gzip -n -6 >"$2"
}

new_tmp() { # name -> sets TMP to a fresh temp dir inside $out
    local d
    # leftovers of builds that were killed hard (-9): safe, we hold the lock
    for d in "$out/.$1.tmp."* "$out/.$1.old."*; do
        [ -e "$d" ] && remove_tree "$d"
    done
    TMP=$(mktemp -d "$out/.$1.tmp.XXXXXX")
    chmod 0755 "$TMP" # apt's _apt sandbox user must be able to reach lists/
    TMPS+=("$TMP")
}

# ---------------------------------------------------------------- busybox --
busybox_bin() {
    local bb
    bb=$(readlink -f /bin/busybox 2>/dev/null || true)
    # must be the static build: the rootfs may contain nothing else
    if [ -z "$bb" ] || [ ! -x "$bb" ] || ldd "$bb" >/dev/null 2>&1; then
        apt_install busybox-static
        bb=$(readlink -f /bin/busybox)
        ! ldd "$bb" >/dev/null 2>&1 || die "/bin/busybox is not statically linked"
    fi
    printf '%s' "$bb"
}

busybox_stamp() { # busybox-binary
    {
        echo "rootfs busybox stamp v$STAMP_VERSION"
        echo "recipe $(sha <"$SELF")"
        echo "busybox $(sha <"$1")"
        echo "SOURCE_DATE_EPOCH $SOURCE_DATE_EPOCH"
    } | sha
}

build_busybox() {
    local t0 bb stamp tmp r
    t0=$(now_us)
    bb=$(busybox_bin)
    stamp=$(busybox_stamp "$bb")
    if is_up_to_date busybox "$stamp"; then
        say "busybox: up to date"
        return 0
    fi
    say "busybox: building from $bb"
    new_tmp busybox
    tmp=$TMP
    r="$tmp/root"
    mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,root,home/vcap/app,run,var/tmp,tmp}
    chmod 0700 "$r/root"
    chmod 1777 "$r/tmp" "$r/var/tmp"
    install -m 0755 "$bb" "$r/bin/busybox"
    # One relative symlink per applet, at its --list-full path
    # (e.g. usr/bin/awk -> ../../bin/busybox). perl: one process, not 270 ln.
    "$bb" --list-full | perl -e '
        my $root = shift;
        while (my $p = <STDIN>) {
            chomp $p;
            next if $p eq "" || $p eq "bin/busybox";
            my $depth = ($p =~ tr{/}{});
            my $dir = $p =~ m{^(.*)/} ? $1 : "";
            my $target = $dir eq "bin" ? "busybox" : ("../" x $depth) . "bin/busybox";
            next if -l "$root/$p";
            symlink($target, "$root/$p") or die "symlink $p: $!\n";
        }' "$r"
    cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
vcap:x:2000:2000:vcap:/home/vcap:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$r/etc/group" <<'EOF'
root:x:0:
vcap:x:2000:
nogroup:x:65534:
EOF
    printf 'localhost\n' >"$r/etc/hostname"
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
    : >"$r/etc/resolv.conf"
    if [ "$(id -u)" = 0 ]; then
        chown -R 0:0 "$r"
        chown 2000:2000 "$r/home/vcap" "$r/home/vcap/app"
    fi
    "$r/bin/sh" -c true || die "busybox rootfs: /bin/sh does not run"
    make_tarball "$r" "$tmp/root.tar.gz"
    install_outputs busybox "$tmp" "$stamp"
    say "busybox: built $out/busybox and $out/busybox.tar.gz in $(elapsed "$t0")s"
}

# ------------------------------------------------------------- cflinuxfs4 --
# Print "SUITE URI" for every deb source of the host's Debian apt config.
host_sources() {
    local f
    f=/etc/apt/sources.list.d/debian.sources
    if [ -r "$f" ]; then
        awk 'BEGIN { RS = ""; FS = "\n" }
        {
            types = ""; uris = ""; suites = ""; enabled = "yes"; key = ""
            for (i = 1; i <= NF; i++) {
                line = $i
                if (line ~ /^#/) continue
                if (line ~ /^[ \t]/) { val = line }
                else { c = index(line, ":"); key = tolower(substr(line, 1, c - 1)); val = substr(line, c + 1) }
                gsub(/^[ \t]+|[ \t]+$/, "", val)
                if (key == "types") types = types " " val
                else if (key == "uris") uris = uris " " val
                else if (key == "suites") suites = suites " " val
                else if (key == "enabled") enabled = tolower(val)
            }
            if (enabled == "no" || (types " ") !~ / deb /) next
            split(uris, u, " "); n = split(suites, s, " ")
            for (j = 1; j <= n; j++) print s[j], u[1]
        }' "$f"
    fi
    f=/etc/apt/sources.list
    if [ -r "$f" ]; then
        awk '$1 == "deb" {
            i = 2
            if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
            print $(i + 1), $i
        }' "$f"
    fi
}

detect_mirrors() { # sets MIRROR and SECURITY_MIRROR
    local srcs
    srcs=$(host_sources 2>/dev/null || true)
    MIRROR=${ROOTFS_MIRROR:-$(awk '$1 !~ /-/ { print $2; exit }' <<<"$srcs")}
    SECURITY_MIRROR=${ROOTFS_SECURITY_MIRROR:-$(awk '$1 ~ /-security$/ { print $2; exit }' <<<"$srcs")}
    MIRROR=${MIRROR:-http://deb.debian.org/debian}
    SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
    MIRROR=${MIRROR%/}
    SECURITY_MIRROR=${SECURITY_MIRROR%/}
}

cf_packages() { # package list, one per line, comments stripped
    sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$CF_DIR/packages.txt"
}

cf_stamp() {
    local f
    {
        echo "rootfs cflinuxfs4 stamp v$STAMP_VERSION"
        echo "recipe $(sha <"$SELF")"
        for f in "$CF_DIR"/*; do
            [ -f "$f" ] && echo "$(basename "$f") $(sha <"$f")"
        done
        echo "suite $SUITE"
        echo "mirror $MIRROR"
        echo "security $SECURITY_MIRROR"
        echo "arch $(dpkg --print-architecture)"
        echo "SOURCE_DATE_EPOCH $SOURCE_DATE_EPOCH"
    } | sha
}

build_cflinuxfs4() {
    local t0 stamp tmp r includes aptopts=() P='' H='' V=''
    t0=$(now_us)
    [ -f "$CF_DIR/packages.txt" ] || die "missing $CF_DIR/packages.txt"
    detect_mirrors
    stamp=$(cf_stamp)
    if is_up_to_date cflinuxfs4 "$stamp"; then
        say "cflinuxfs4: up to date"
        return 0
    fi
    [ "$(id -u)" = 0 ] || die "cflinuxfs4 must be built as root (mmdebstrap --mode=root)"
    command -v mmdebstrap >/dev/null || apt_install mmdebstrap
    [ -e /usr/share/keyrings/debian-archive-keyring.gpg ] || apt_install debian-archive-keyring
    [ -d /usr/share/mmdebstrap/hooks/merged-usr ] || die "mmdebstrap lacks hooks/merged-usr"

    includes=$(cf_packages | paste -sd, -)
    # Carry over the host's apt proxy / validity settings (not the rootfs's
    # business: the file mmdebstrap writes for them is removed afterwards).
    eval "$(apt-config shell P Acquire::http::Proxy H Acquire::https::Proxy V Acquire::Check-Valid-Until)"
    if [ -n "$P" ]; then aptopts+=("--aptopt=Acquire::http::Proxy \"$P\""); fi
    if [ -n "$H" ]; then aptopts+=("--aptopt=Acquire::https::Proxy \"$H\""); fi
    if [ "$V" = false ]; then aptopts+=('--aptopt=Acquire::Check-Valid-Until "false"'); fi

    new_tmp cflinuxfs4
    tmp=$TMP
    r="$tmp/root"
    say "cflinuxfs4: [1/4] mmdebstrap $SUITE minbase + $includes from $MIRROR (+ updates, security from $SECURITY_MIRROR)"
    export ROOTFS_CF_CUSTOMIZE="$CF_DIR/customize.sh"
    # Own mount namespace: whatever mmdebstrap mounts in the chroot disappears
    # with it, even if it is killed.
    # shellcheck disable=SC2016 # $1 and $ROOTFS_CF_CUSTOMIZE are expanded by mmdebstrap's sh
    unshare --mount --propagation private -- \
        mmdebstrap --mode=root --variant=minbase --format=directory \
        --include="$includes" \
        --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --dpkgopt='path-exclude=/usr/share/lintian/*' \
        "${aptopts[@]+"${aptopts[@]}"}" \
        --customize-hook='bash "$ROOTFS_CF_CUSTOMIZE" "$1"' \
        "$SUITE" "$r" \
        "deb $MIRROR $SUITE main" \
        "deb $MIRROR $SUITE-updates main" \
        "deb $SECURITY_MIRROR $SUITE-security main"

    say "cflinuxfs4: [2/4] finishing and checking the tree"
    # Device nodes are the runtime's job (it mounts /dev); without them the
    # tarball also unpacks in an unprivileged user namespace.
    find "$r/dev" -mindepth 1 -delete
    rm -f "$r/etc/apt/apt.conf.d/99mmdebstrap"
    rm -rf "$r/var/lib/apt/lists/"* "$r/var/cache/apt/"*.bin "$r/var/cache/apt/archives/"*.deb
    if [ -e "$r/etc/machine-id" ]; then : >"$r/etc/machine-id"; fi
    local p
    for p in bin/bash usr/bin/unzip usr/bin/tar bin/gzip usr/bin/env etc/ssl/certs/ca-certificates.crt; do
        [ -e "$r/$p" ] || die "cflinuxfs4: missing /$p"
    done
    # shellcheck disable=SC2016 # expanded inside the chroot
    chroot "$r" /bin/bash -c '
        set -e
        locale -a | grep -qx en_US.utf8
        [ "$(id -u vcap):$(id -g vcap)" = 2000:2000 ]
        [ "$(stat -c %u:%g /home/vcap/app)" = 2000:2000 ]
        [ "$(stat -c %a /tmp)" = 1777 ]
        LANG=en_US.UTF-8 ls --version | grep -q GNU
    ' || die "cflinuxfs4: sanity check failed"

    say "cflinuxfs4: [3/4] tarball"
    make_tarball "$r" "$tmp/root.tar.gz"

    say "cflinuxfs4: [4/4] moving into place"
    install_outputs cflinuxfs4 "$tmp" "$stamp"
    say "cflinuxfs4: built $out/cflinuxfs4 ($(du -sm "$out/cflinuxfs4" | cut -f1) MB) and $out/cflinuxfs4.tar.gz ($(( $(stat -c %s "$out/cflinuxfs4.tar.gz") / 1048576 )) MB) in $(elapsed "$t0")s"
}

case $target in
    busybox) build_busybox ;;
    cflinuxfs4) build_cflinuxfs4 ;;
    all) build_busybox; build_cflinuxfs4 ;;
esac
