# Hutch: the top-level driver. `make` builds into build/; `make test` installs what is missing,
# builds (plain and ASan/UBSan) and runs every test; `make run` starts the server.
BUILD      ?= build
BUILD_ASAN ?= build-asan
MESON      ?= meson
NINJA      ?= ninja

.PHONY: all deps build build-asan test test-quick check-asan run bench bench-sandbox bench-recovery clean format fuzz

all: build

deps:
	@scripts/deps.sh

$(BUILD)/build.ninja:
	$(MESON) setup $(BUILD) --buildtype=debugoptimized

build: $(BUILD)/build.ninja
	$(NINJA) -C $(BUILD)

$(BUILD_ASAN)/build.ninja:
	$(MESON) setup $(BUILD_ASAN) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

build-asan: $(BUILD_ASAN)/build.ninja
	$(NINJA) -C $(BUILD_ASAN)

# Everything CI runs: unit, fuzz-corpus replay and integration tests, on the normal and the
# sanitizer build. Ends with "N passed, N failed".
test: deps build build-asan
	@scripts/run-tests.sh $(BUILD) $(BUILD_ASAN)

# The same on the normal build only, for a quick loop.
test-quick: build
	@scripts/run-tests.sh $(BUILD)

check-asan: deps build-asan
	@scripts/run-tests.sh $(BUILD_ASAN)

run: deps build
	@scripts/run.sh $(BUILD)

bench: deps build
	@scripts/bench.sh $(BUILD)

# Sandbox.create() latency, create → first command vs bare bwrap, memory per idle sandbox (root).
bench-sandbox: deps build
	@scripts/sandbox-bench.sh $(BUILD)

# A restart after kill -9 with sandboxes, some with a hung envd: time to /health (root).
bench-recovery: deps build
	@scripts/recovery-bench.sh $(BUILD)

fuzz: deps
	@scripts/fuzz.sh

format:
	@git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) build-fuzz
