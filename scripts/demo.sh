#!/usr/bin/env bash
# The platform's main job on this machine: controller-lite and one cell
# (gardend + cell-agent, stack cflinuxfs4); cfl logs in, uploads the buildpack
# in scripts/demo/buildpack (plus the host's static busybox as web server),
# pushes scripts/demo/app, fetches its page, scales it to 2, shows logs and the
# cell's containers; everything is stopped and removed at exit, Ctrl-C or failure.
# Expects `make rootfs build` (README's first command does both). Knobs:
# GARDEN_BIN (the binaries' directory), CFL_DEMO_ROOTFS (the stack rootfs).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(realpath "${GARDEN_BIN:-target/x86_64-unknown-linux-gnu/release}")
stack_rootfs=$(realpath -m "${CFL_DEMO_ROOTFS:-rootfs/out/cflinuxfs4}")
demo=$PWD/scripts/demo
app=hello-static
cell="demo-cell"
cgroup_parent=cfl-demo
work="" ctl_pid="" garden_pid="" agent_pid=""

if [[ -t 1 ]]; then bold=$'\e[1m' plain=$'\e[0m'; else bold="" plain=""; fi
section() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
note() { printf '   %s\n' "$@"; }
die() { echo "demo: $*" >&2; exit 1; }

for b in controller-lite lifecycle-builder lifecycle-docker-builder gardend garden-runc \
         gardenctl cell-agent cfl; do
  [[ -x $bin/$b ]] || die "$bin/$b missing; run 'make build'"
done
[[ -d $stack_rootfs/home/vcap ]] || die "$stack_rootfs missing; run 'make rootfs'"
[[ -x /bin/busybox ]] || scripts/deps.sh # installs busybox-static
(( EUID == 0 )) || die "run as root (containers need namespaces, cgroups and mounts)"

# The first free TCP port on loopback from $1 on.
free_port() {
  local p=$1
  while ss -Htln "sport = :$p" | grep -q .; do p=$((p + 1)); done
  echo "$p"
}

# wait_for WHAT SECONDS COMMAND...: polls COMMAND every half second.
wait_for() {
  local what=$1 deadline=$((SECONDS + $2))
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out waiting for $what"
    sleep 0.5
  done
}

# stop PID SIGNAL SECONDS: signals a child, waits for it, then kills it.
stop() {
  local pid=$1 i=0
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill "-$2" "$pid" 2>/dev/null
  while ((i++ < $3 * 10)) && kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}

cleanup() {
  local status=$?
  trap - EXIT
  trap "" INT TERM # a second Ctrl-C must not cut the cleanup short
  set +e
  [[ -n $work ]] || exit "$status"
  if ((status != 0 && status != 130)); then
    local log
    for log in "$work"/logs/*.log; do
      [[ -s $log ]] && { echo "--- last lines of $(basename "$log") ---"; tail -n 15 "$log"; }
    done
  fi
  section "Stopping everything and cleaning up"
  stop "$agent_pid" INT 10 # SIGINT: no evacuation; its containers go below
  if [[ -S $work/garden.sock ]]; then
    local h
    for h in $("$bin/gardenctl" --socket "$work/garden.sock" --json list 2>/dev/null | jq -r '.[]'); do
      "$bin/gardenctl" --socket "$work/garden.sock" destroy "$h" >/dev/null 2>&1 &&
        note "container $h destroyed"
    done
  fi
  stop "$garden_pid" TERM 10
  # Containers gardend could not destroy (it was gone): through the runtime.
  local id
  for id in $("$bin/garden-runc" --root "$work/runc" list -q 2>/dev/null); do
    "$bin/garden-runc" --root "$work/runc" delete --force "$id" && note "container $id deleted"
  done
  if [[ -f $work/garden.toml ]]; then
    "$bin/gardend" --config "$work/garden.toml" --teardown-network 2>/dev/null &&
      note "gardend --teardown-network: nft table gardendemo and links removed"
  fi
  stop "$ctl_pid" TERM 10
  # Anything still mounted below the work dir (volumes, rootfs overlays), deepest first.
  local mnt
  while read -r mnt; do
    umount -l "$mnt" 2>/dev/null || true
  done < <(awk -v p="$work/" 'index($5, p) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  local f
  while read -r f; do
    losetup -j "$f" -O NAME -n | xargs -r -n1 losetup -d
  done < <(find "$work/volumes" -type f 2>/dev/null)
  rmdir /sys/fs/cgroup/*/"$cgroup_parent" /sys/fs/cgroup/"$cgroup_parent" 2>/dev/null || true
  rm -rf --one-file-system "$work" && note "removed $work"
  case $status in
    0) echo "${bold}demo: done${plain}" ;;
    130) echo "demo: interrupted; everything it started is stopped and removed" >&2 ;;
    *) echo "demo: FAILED (exit $status)" >&2 ;;
  esac
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

work=$(mktemp -d /var/tmp/cfl-demo.XXXXXX)
chmod 755 "$work" # the containers' root user reaches its rootfs mounts below
mkdir -p "$work/logs" "$work/cfl"
export CFL_HOME=$work/cfl NO_COLOR=1
ctl_port=$(free_port 9022)
rep_port=$(free_port 60000)
api=http://127.0.0.1:$ctl_port
password=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
cfl() { echo "\$ cfl $*"; "$bin/cfl" "$@"; }

section "Starting controller-lite on $api (SQLite and blobs in $work/controller)"
cat >"$work/controller.toml" <<EOF
listen = "127.0.0.1:$ctl_port"
data_dir = "$work/controller"
[[auth.users]]
name = "admin"
password = "$password"
admin = true
[staging]
memory_mb = 256
disk_mb = 256
EOF
# The daemons run in their own sessions: a Ctrl-C reaches only this script,
# whose cleanup stops them in order (gardend must outlive the agent).
setsid "$bin/controller-lite" serve --config "$work/controller.toml" \
  >"$work/logs/controller.out" 2>"$work/logs/controller.log" &
ctl_pid=$!
wait_for "controller-lite (see $work/logs/controller.log)" 30 grep -q "listening on" "$work/logs/controller.out"
note "API, UAA, log-cache and the BBS (auctioneer, convergence) on one port"

section "Starting cell $cell: gardend and cell-agent, stack cflinuxfs4 = $stack_rootfs"
cat >"$work/garden.toml" <<EOF
depot = "$work/depot"
network_state = "$work/network"
[listen]
socket = "$work/garden.sock"
[runtime]
binary = "$bin/garden-runc"
state_root = "$work/runc"
cgroup_parent = "$cgroup_parent"
[images]
store = "$work/images"
[disk]
kind = "loop"
root = "$work/volumes"
[containers]
stop_timeout = "2s"
[network]
pool = "10.254.0.0/22"
table = "gardendemo"
bridge_prefix = "gdmb-"
veth_prefix = "gdmv-"
ip_forward = false
port_pool_start = 60100
port_pool_size = 50
EOF
GARDEN_LOG=info setsid "$bin/gardend" --config "$work/garden.toml" 2>"$work/logs/gardend.log" &
garden_pid=$!
wait_for "gardend (see $work/logs/gardend.log)" 30 test -S "$work/garden.sock"
note "gardend serves the Garden API on $work/garden.sock"

"$bin/controller-lite" cell-key --config "$work/controller.toml" "$cell" \
  >"$work/cell.key" 2>>"$work/logs/controller.log"
cat >"$work/agent.toml" <<EOF
cell_id = "$cell"
garden_socket = "$work/garden.sock"
controller_url = "$api"
cell_key_file = "$work/cell.key"
listen = "127.0.0.1:$rep_port"
state_dir = "$work/agent"
metrics_interval = "1s"
[stacks]
cflinuxfs4 = "$stack_rootfs"
[executor]
stop_grace = "2s"
startup_interval = "250ms"
EOF
CELL_AGENT_LOG=info setsid "$bin/cell-agent" run --config "$work/agent.toml" 2>"$work/logs/agent.log" &
agent_pid=$!
diag() { "$bin/cell-agent" diag --config "$work/agent.toml" "$@"; }
present() { diag --json summary | jq -e '.agent.presence.established'; }
wait_for "the cell's presence (see $work/logs/agent.log)" 60 present
note "cell-agent (rep on 127.0.0.1:$rep_port) announced $cell to the controller"

section "Logging in as a developer (admin)"
cfl login -a "$api" -u admin -p "$password"

section "Uploading the admin buildpack: a static site buildpack"
mkdir -p "$work/buildpack"
cp -r "$demo/buildpack/bin" "$work/buildpack/"
cp /bin/busybox "$work/buildpack/bin/busybox"
(cd "$work/buildpack" && python3 -m zipfile -c ../static-site-buildpack.zip bin)
note "detect: apps with public/index.html; supply: busybox (the web server) into deps/;" \
     "release: web: busybox httpd -p \$PORT -h public"
cfl create-buildpack static_site_buildpack "$work/static-site-buildpack.zip" 1
cfl buildpacks

section "Pushing the app in scripts/demo/app (seed steps 1-12)"
note "1-3   cfl applies manifest.yml: the controller stores the app record" \
     "4-5   resource matching, then the rest is zipped, uploaded and stored as the package" \
     "6-10  a staging Task is auctioned to $cell, which downloads the package, the buildpack" \
     "      and the lifecycle into a fresh cflinuxfs4 container and runs the builder;" \
     "      its output streams here; the droplet goes back to the blobstore" \
     "11-12 the web process becomes an LRP placed on the cell; cfl waits until it runs"
(cd "$demo/app" && cfl push --staging-timeout 180 -t 60)

section "The app as the controller shows it"
cfl app "$app"

# "HOST PORT" of each RUNNING instance of the web process.
instances() {
  "$bin/cfl" app "$app" --json | jq -r '.processes[] | select(.type == "web") | .stats[]
    | select(.state == "RUNNING") | "\(.host) \(.instance_ports[0].external)"'
}
running() { [[ $(instances | wc -l) == "$1" ]]; }
fetch() {
  local host port
  while read -r host port; do
    echo "\$ busybox wget -qO- http://$host:$port/"
    /bin/busybox wget -qO- "http://$host:$port/" | sed 's/^/   /'
  done < <(instances)
}

section "Fetching the app's page from the instance's address and port"
fetch

section "Scaling to 2 instances"
cfl scale "$app" -i 2
wait_for "2 running instances" 60 running 2
cfl app "$app"
fetch

section "Recent logs (staging, cell and app lines)"
sleep 1 # the agent forwards log lines every 200 ms
cfl logs "$app" --recent

section "The cell's containers (cell-agent diag containers)"
diag containers

section "Deleting the app (the controller stops its instances on the cell)"
cfl delete "$app"
no_containers() {
  [[ $("$bin/gardenctl" --socket "$work/garden.sock" --json list | jq length) == 0 ]]
}
wait_for "the cell to stop the app's containers" 30 no_containers
note "no containers left on $cell"
