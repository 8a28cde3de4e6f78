# Moongate: a thin wrapper around CMake. `make run` and `make test` are all a
# fresh Debian 12 machine needs.

BUILD_DIR ?= build
ASAN_DIR ?= build-asan
CONFIG ?= conf/moongate.yaml
JOBS ?= $(shell nproc)

.PHONY: all deps test-deps build run test test-unit test-spec test-asan bench format clean

all: build

deps:
	@scripts/install-deps.sh build

test-deps:
	@scripts/install-deps.sh test

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR)

build: deps $(BUILD_DIR)/CMakeCache.txt
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	scripts/run.sh $(BUILD_DIR) $(CONFIG)

test: test-deps build
	MOONGATE_BUILD=$(BUILD_DIR) scripts/test.sh

test-asan: test-deps
	cmake -S . -B $(ASAN_DIR) -DMOONGATE_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build $(ASAN_DIR) -j $(JOBS)
	MOONGATE_BUILD=$(ASAN_DIR) scripts/test.sh

bench: build
	@scripts/install-deps.sh bench
	tests/bench/run.sh $(BUILD_DIR)

format:
	clang-format -i core/*.c core/*.h tests/unit/*.c tests/unit/*.h tests/upstream/*.c

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)
