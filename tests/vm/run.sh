#!/usr/bin/env bash
# Runs garden's privileged tests on a pure cgroup v2 kernel: Debian's kernel
# under qemu (software emulation), booted from an initramfs that holds
# busybox, the busybox test rootfs and the (static) test binaries. Results
# come back over the serial console.
#
#   tests/vm/run.sh                 every VM suite
#   tests/vm/run.sh oom             only tests whose name contains "oom"
#
# Fails when any test fails, when the VM does not boot (or takes longer than
# GARDEN_VM_BOOT_LIMIT seconds, 40, to reach the first test; about 8 s on an
# idle host, but software emulation slows down with the host's load), or when the
# whole run exceeds GARDEN_VM_TIMEOUT seconds (900). The kernel is cached in
# GARDEN_VM_CACHE (/var/cache/garden-vm), initramfs images by content hash.
# The console log of the last run is $GARDEN_VM_CACHE/console.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
cache=${GARDEN_VM_CACHE:-/var/cache/garden-vm}
timeout_s=${GARDEN_VM_TIMEOUT:-900}
boot_limit=${GARDEN_VM_BOOT_LIMIT:-40}
filter=${1:-}
rootfs=${GARDEN_TEST_ROOTFS:-$root/rootfs/out/busybox}
# The integration test binaries that run inside: crate:binary[:extra args].
# garden-disk's xfs tests are ignored on the host (no XFS quotas there).
suites=(garden:lifecycle garden:limits garden:isolation garden:security garden:bad_bundles
        garden-cgroups:host garden-cgroups:unified_core garden-disk:xfs_backend:--ignored)
# Kernel modules, in load order: overlayfs (containers) before the boot
# is reported; loop and XFS with its checksum (garden-disk's XFS store
# image) after, so they do not count against the boot time.
early_modules=(overlay)
late_modules=(loop crc32c_generic libcrc32c xfs)
modules=("${early_modules[@]}" "${late_modules[@]}")

say() { echo "vm: $*" >&2; }
# No ELF interpreter: runs in the VM without any shared library.
is_static() { ! readelf -l "$1" 2>/dev/null | grep -q "Requesting program interpreter"; }
die() { say "$*"; exit 1; }

[[ -x $rootfs/bin/busybox ]] || die "test rootfs missing at $rootfs: run rootfs/build.sh busybox"
for tool in qemu-system-x86_64 cpio jq readelf strip ldd mkfs.xfs; do
  command -v "$tool" >/dev/null || die "$tool missing: run scripts/deps.sh"
done
mkdir -p "$cache"

# --- the kernel: Debian's linux-image-amd64, vmlinuz and the modules we need
resolve_kernel() {
  apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}
kpkg=$(resolve_kernel)
if [[ -z $kpkg ]]; then
  apt-get update -q >/dev/null 2>&1 || true
  kpkg=$(resolve_kernel)
fi
[[ -n $kpkg ]] || die "cannot resolve linux-image-amd64 from the apt lists"
kdir=$cache/$kpkg
have_kernel() {
  [[ -f $kdir/vmlinuz ]] || return 1
  for m in "${modules[@]}"; do [[ -f $kdir/modules/$m.ko ]] || return 1; done
}
if ! have_kernel; then
  say "fetching $kpkg"
  tmp=$(mktemp -d "$cache/.kernel.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download -q "$kpkg" >/dev/null 2>&1) \
    || (apt-get update -q >/dev/null && cd "$tmp" && apt-get download -q "$kpkg" >/dev/null 2>&1) \
    || die "apt-get download $kpkg failed"
  dpkg-deb -x "$tmp"/*.deb "$tmp/x"
  mkdir -p "$tmp/out/modules"
  cp "$tmp"/x/boot/vmlinuz-* "$tmp/out/vmlinuz"
  # Modules Debian builds that the tests need (see $modules).
  for m in "${modules[@]}"; do
    find "$tmp/x/lib/modules" -name "$m.ko" -exec cp {} "$tmp/out/modules/" \;
    [[ -f $tmp/out/modules/$m.ko ]] || die "$kpkg has no $m.ko"
  done
  rm -rf "$kdir" && mv "$tmp/out" "$kdir"
  rm -rf "$tmp"
  trap - EXIT
fi

# --- the test binaries (static, so nothing else is needed inside)
say "building the test binaries"
artifacts=$(cargo test --release --no-run --message-format=json -p garden -p garden-cgroups -p garden-disk 2>/dev/null \
  | jq -c 'select(.reason == "compiler-artifact" and .executable != null)
           | {name: .target.name, kind: .target.kind[0], test: .profile.test, exe: .executable}')
exe_of() { # name kind test
  jq -r --arg n "$1" --arg k "$2" --argjson t "$3" \
    'select(.name == $n and .kind == $k and .test == $t) | .exe' <<<"$artifacts" | tail -1
}

stage=$(mktemp -d /var/tmp/garden-vm-stage.XXXXXX)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,vm/bin,vm/modules}
cp /bin/busybox "$stage/bin/busybox"
is_static "$stage/bin/busybox" || die "/bin/busybox is not static (install busybox-static)"
cp "$root/tests/vm/init" "$stage/init"
chmod 755 "$stage/init"
# Numbered: /init loads them in glob order.
mkdir -p "$stage/vm/modules/late"
i=10
for m in "${early_modules[@]}"; do
  cp "$kdir/modules/$m.ko" "$stage/vm/modules/$i-$m.ko"
  i=$((i + 1))
done
for m in "${late_modules[@]}"; do
  cp "$kdir/modules/$m.ko" "$stage/vm/modules/late/$i-$m.ko"
  i=$((i + 1))
done
# mkfs.xfs (garden-disk formats its XFS store image) and the shared
# libraries it needs, at their host paths.
mkfs_xfs=$(command -v mkfs.xfs)
cp "$mkfs_xfs" "$stage/sbin/mkfs.xfs"
for lib in $(ldd "$mkfs_xfs" | grep -o '/[^ ]*'); do
  mkdir -p "$stage$(dirname "$lib")"
  cp -L "$lib" "$stage$lib"
done
cp -a "$rootfs" "$stage/vm/rootfs"
printf '%s\n' "$filter" >"$stage/vm/filter"
# The tests find the runtime at the absolute path cargo compiled into them.
for bin in garden-runc garden-probe; do
  exe=$(exe_of "$bin" bin false)
  [[ -n $exe ]] || die "no $bin among the build artifacts"
  mkdir -p "$stage$(dirname "$exe")"
  cp "$exe" "$stage$exe"
done
: >"$stage/vm/tests"
for s in "${suites[@]}"; do
  IFS=: read -r _ name args <<<"$s"
  exe=$(exe_of "$name" test true)
  [[ -n $exe ]] || die "no test binary $name"
  is_static "$exe" || die "$exe is not static (.cargo/config.toml)"
  strip --strip-debug -o "$stage/vm/bin/$name" "$exe"
  echo "$name /vm/bin/$name $args" >>"$stage/vm/tests"
done

# --- the initramfs, cached by content
hash=$(cd "$stage" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
initrd=$cache/initrd-$hash.gz
if [[ ! -f $initrd ]]; then
  say "packing the initramfs"
  (cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 >"$initrd.tmp"
  mv "$initrd.tmp" "$initrd"
  # Keep the five newest images.
  ls -1t "$cache"/initrd-*.gz | tail -n +6 | xargs -r rm -f
fi

# --- boot and collect
log=$cache/console.log
say "booting $kpkg (tcg) with $(basename "$initrd")"
started=$(date +%s.%N)
set +e
timeout --foreground "$timeout_s" qemu-system-x86_64 -accel tcg -m "${GARDEN_VM_MEM:-1024}" -smp "${GARDEN_VM_SMP:-1}" \
  -kernel "$kdir/vmlinuz" -initrd "$initrd" \
  -append "console=ttyS0 panic=-1 quiet loglevel=${GARDEN_VM_LOGLEVEL:-3}" \
  -nographic -no-reboot -monitor none -serial stdio </dev/null 2>&1 \
  | while IFS= read -r line; do
      line=${line%$'\r'}
      # The firmware's terminal escapes can precede the first marker.
      [[ $line == *VMTEST* ]] && line="VMTEST${line#*VMTEST}"
      printf '%s\n' "$line" >>"$log.new"
      case "$line" in
        VMTEST-BOOTED*) awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "VMTEST-HOST-BOOTED %.1f\n", b - a }' >>"$log.new" ;;
      esac
      printf '%s\n' "$line"
    done
status=${PIPESTATUS[0]}
set -e
mv "$log.new" "$log"

[[ $status == 124 ]] && die "the VM did not finish within ${timeout_s}s (console: $log)"
grep -q "^VMTEST-BOOTED" "$log" || die "the VM did not boot (console: $log)"
boot=$(awk '/^VMTEST-HOST-BOOTED/ {print $2}' "$log")
say "first test after ${boot}s"
awk -v b="$boot" -v l="$boot_limit" 'BEGIN { exit !(b > l) }' \
  && die "booting took ${boot}s, more than ${boot_limit}s"
grep -q "^VMTEST-DONE" "$log" || die "the VM stopped before the tests finished (console: $log)"
failed=$(grep "^VMTEST-END" "$log" | grep -v "rc=0$" || true)
[[ -z $failed ]] || die "failed in the VM: $(echo "$failed" | tr '\n' ' ')"
say "all $(grep -c '^VMTEST-END' "$log") suites passed on cgroup v2"
