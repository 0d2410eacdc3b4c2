#!/usr/bin/env bash
# A short benchmark run inside the test suite, so the benchmark itself never
# rots: a few iterations, figures printed, no timing assertions.
set -euo pipefail
cd "$(dirname "$0")/.."
"${GARDEN_BIN:-target/x86_64-unknown-linux-gnu/release}/garden-bench" --rootfs "${GARDEN_TEST_ROOTFS:-rootfs/out/busybox}" --iterations 20 --warmup 3
# gardend's create benchmark, short: it fails only on errors (a create,
# run or destroy failing), never on the mean-Create target.
"${GARDEN_BIN:-target/x86_64-unknown-linux-gnu/release}/gardend-bench" --rootfs "${GARDEN_TEST_ROOTFS:-rootfs/out/busybox}" --clients 2 --creates 5 --warmup 1
