#!/usr/bin/env bash
# The platform's main job on this machine, until the controller exists:
# garden runs one container from the default stack (cflinuxfs4) with real
# namespaces, cgroup limits and the default seccomp profile, streams its
# output live, reports its exit status and limits, and destroys it.
#
# Expects `make rootfs build` to have run (README's first command does both).
set -euo pipefail
cd "$(dirname "$0")/.."

runtime=${GARDEN_RUNC:-${GARDEN_BIN:-target/x86_64-unknown-linux-gnu/release}/garden-runc}
lower=$(realpath "${GARDEN_DEMO_ROOTFS:-rootfs/out/cflinuxfs4}")
state=/run/garden-demo
id="demo-$$"
memory_mb=${GARDEN_DEMO_MEMORY_MB:-256}
pids=${GARDEN_DEMO_PIDS:-128}

[[ -x $runtime ]] || { echo "demo: $runtime missing; run 'make build'" >&2; exit 1; }
[[ -d $lower/home/vcap ]] || { echo "demo: $lower missing; run 'make rootfs'" >&2; exit 1; }

bundle=$(mktemp -d /var/tmp/garden-demo.XXXXXX)
cleanup() {
  "$runtime" --root "$state" delete --force "$id" >/dev/null 2>&1 || true
  rm -rf "$bundle"
}
trap cleanup EXIT
mkdir -p "$bundle/rootfs" "$bundle/upper" "$bundle/work"

# Start from runc's default spec and make it an app container: the stack as
# a read-only overlay lower layer, user vcap, limits, Garden's seccomp list.
"$runtime" spec --bundle "$bundle"
script='
echo "hello from $(hostname): $(. /etc/os-release; echo "$PRETTY_NAME"), user $(id -un) ($(id -u))"
echo "pid 1 is $(cat /proc/1/comm); processes I can see: $(ls -d /proc/[0-9]* | wc -l)"
echo "network interfaces: $(ls /sys/class/net | tr "\n" " ")"
if [ -f /sys/fs/cgroup/memory.max ]; then
  echo "my limits: memory.max=$(cat /sys/fs/cgroup/memory.max) pids.max=$(cat /sys/fs/cgroup/pids.max)"
else
  echo "my limits: memory=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes) pids=$(cat /sys/fs/cgroup/pids/pids.max)"
fi
for i in 1 2 3; do echo "working... $i"; sleep 0.5; done
echo "writing to the root filesystem goes to this container'"'"'s upper layer" > /tmp/note
exit 3
'
jq --arg lower "$lower" --arg upper "$bundle/upper" --arg work "$bundle/work" \
   --arg script "$script" --argjson mem $((memory_mb * 1024 * 1024)) --argjson pids "$pids" '
  .process.terminal = false
  | .process.args = ["bash", "-c", $script]
  | .process.user = {uid: 2000, gid: 2000}
  | .process.cwd = "/home/vcap/app"
  | .process.env += ["HOME=/home/vcap", "LANG=en_US.UTF-8"]
  | .hostname = "garden-demo"
  | .root = {path: "rootfs", readonly: false}
  | .annotations = {
      "garden.rootfs.lower": $lower,
      "garden.rootfs.upper": $upper,
      "garden.rootfs.work": $work,
      "garden.seccomp": "default"
    }
  | .linux.namespaces = (.linux.namespaces + [{type: "cgroup"}] | unique_by(.type))
  | .linux.resources.memory = {limit: $mem, swap: $mem}
  | .linux.resources.pids = {limit: $pids}
  | .linux.resources.cpu = {shares: 512, quota: 50000, period: 100000}
' "$bundle/config.json" >"$bundle/config.json.new"
mv "$bundle/config.json.new" "$bundle/config.json"

echo "== garden-runc run $id (rootfs: overlay on $lower)"
set +e
"$runtime" --root "$state" run --keep --bundle "$bundle" "$id"
status=$?
set -e
echo "== exit status: $status"

echo "== state after exit"
"$runtime" --root "$state" state "$id" | jq -c '{id, status, pid, bundle}'

echo "== limits, read from the host's cgroup"
if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
  cg=/sys/fs/cgroup/garden/$id
  echo "memory.max=$(cat "$cg/memory.max") memory.swap.max=$(cat "$cg/memory.swap.max")" \
       "pids.max=$(cat "$cg/pids.max") cpu.max=\"$(cat "$cg/cpu.max")\" cpu.weight=$(cat "$cg/cpu.weight")"
else
  v1=/sys/fs/cgroup
  echo "memory.limit_in_bytes=$(cat "$v1/memory/garden/$id/memory.limit_in_bytes")" \
       "pids.max=$(cat "$v1/pids/garden/$id/pids.max")" \
       "cpu.cfs_quota_us=$(cat "$v1/cpu/garden/$id/cpu.cfs_quota_us")" \
       "cpu.shares=$(cat "$v1/cpu/garden/$id/cpu.shares")"
fi
echo "upper layer holds: $(cd "$bundle/upper" && find . -type f | tr '\n' ' ')"

echo "== garden-runc delete $id"
"$runtime" --root "$state" delete "$id"
if "$runtime" --root "$state" state "$id" >/dev/null 2>&1; then
  echo "demo: $id still exists after delete" >&2
  exit 1
fi
if [[ -e /sys/fs/cgroup/memory/garden/$id || -e /sys/fs/cgroup/garden/$id ]]; then
  echo "demo: cgroup of $id left behind" >&2
  exit 1
fi
echo "== destroyed; nothing left behind"
[[ $status == 3 ]]
