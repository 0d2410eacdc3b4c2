# Entry points: `make run` (the platform's main job on this machine) and
# `make test` (the whole suite). Both install what they need first.

CARGO ?= cargo
# .cargo/config.toml names the target, so binaries land here.
BIN := $(CURDIR)/target/x86_64-unknown-linux-gnu/release
export GARDEN_BIN ?= $(BIN)
export GARDEN_TEST_ROOTFS ?= $(CURDIR)/rootfs/out/busybox

.PHONY: deps rootfs build run test vm-test lint unit bench clean

deps:
	@scripts/deps.sh

rootfs: deps
	@rootfs/build.sh all

build: deps
	$(CARGO) build --release --workspace

run: rootfs build
	@scripts/demo.sh

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --quiet

# The whole suite: lints, unit tests and the privileged integration tests
# (they need root: real namespaces, cgroups and mounts).
test: rootfs lint
	$(CARGO) test --workspace --release
	@tests/vm/run.sh
	@scripts/bench-smoke.sh

# The privileged runtime and cgroup tests again, on a pure cgroup v2 kernel
# under qemu (tests/vm/run.sh FILTER runs only matching tests).
vm-test: rootfs
	@tests/vm/run.sh

bench: rootfs build
	$(BIN)/garden-bench --rootfs $(GARDEN_TEST_ROOTFS)
	$(BIN)/gardend-bench --rootfs $(GARDEN_TEST_ROOTFS)

clean:
	$(CARGO) clean
	rm -rf rootfs/out
