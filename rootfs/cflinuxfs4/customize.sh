#!/bin/bash
# mmdebstrap --customize-hook for the cflinuxfs4 rootfs.
# Runs on the host after all packages are installed, with the chroot directory
# as $1 (see rootfs/build.sh). It is an input of the rebuild stamp.
set -euo pipefail

root=${1:?usage: customize.sh CHROOT_DIR}
say() { printf 'rootfs cflinuxfs4: customize: %s\n' "$*" >&2; }

# --- locale: en_US.UTF-8 generated and the system default -------------------
say "locale en_US.UTF-8"
# Uncomment it in /etc/locale.gen (the file that locale-gen and a later
# dpkg-reconfigure read), compile it, make it the default LANG
# (/etc/default/locale), and record the same answers in debconf.
sed -i 's/^#[[:space:]]*\(en_US\.UTF-8 UTF-8\)[[:space:]]*$/\1/' "$root/etc/locale.gen"
grep -qx 'en_US.UTF-8 UTF-8' "$root/etc/locale.gen"
chroot "$root" locale-gen >/dev/null
chroot "$root" update-locale LANG=en_US.UTF-8
grep -qx 'LANG=en_US.UTF-8' "$root/etc/default/locale"
chroot "$root" debconf-set-selections <<'EOF'
locales locales/locales_to_be_generated multiselect en_US.UTF-8 UTF-8
locales locales/default_environment_locale select en_US.UTF-8
EOF

# --- user and group vcap (2000:2000), home /home/vcap, app dir --------------
say "user vcap 2000:2000"
chroot "$root" groupadd --gid 2000 vcap
# --no-log-init: no sparse lastlog/faillog entries. shadow honours
# SOURCE_DATE_EPOCH for the "last password change" field.
chroot "$root" useradd --uid 2000 --gid 2000 --comment vcap \
    --home-dir /home/vcap --create-home --shell /bin/bash --no-log-init vcap
install -d -m 0755 -o 2000 -g 2000 "$root/home/vcap" "$root/home/vcap/app"

# --- writable temp dirs ------------------------------------------------------
install -d -m 1777 "$root/tmp" "$root/var/tmp"
chmod 1777 "$root/tmp" "$root/var/tmp"

# --- host-independent identity files (mmdebstrap copies the host's) ---------
# The container runtime bind-mounts its own /etc/hosts, /etc/hostname and
# /etc/resolv.conf; these are placeholders that do not leak the build host.
printf 'localhost\n' >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
: >"$root/etc/resolv.conf"
chmod 0644 "$root/etc/hostname" "$root/etc/hosts" "$root/etc/resolv.conf"
if [ -e "$root/etc/machine-id" ]; then : >"$root/etc/machine-id"; fi
