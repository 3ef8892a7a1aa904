# lgh — the two commands:  make run   (the reference problem)   make test   (every tier)
#
# `make` installs missing Debian packages when run as root (scripts/deps.sh), configures
# and builds into build/. The GPU tier of the tests runs when a CUDA device is present.
BUILD    ?= build
PREFIX   ?= /usr/local
JOBS     ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
RUN_ARGS ?=
MAKEFLAGS += --no-print-directory

.PHONY: all deps configure build run test test-c test-python install clean

all: build

$(BUILD)/.deps: scripts/deps.sh
	@mkdir -p $(BUILD)
	@./scripts/deps.sh > $(BUILD)/.python.tmp && mv $(BUILD)/.python.tmp $(BUILD)/.python && touch $@

deps: $(BUILD)/.deps

configure: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS) >$(BUILD)/configure.log 2>&1 \
	  || { cat $(BUILD)/configure.log; exit 1; }

build: configure
	@cmake --build $(BUILD) -j $(JOBS)
	@git rev-parse --short HEAD > $(BUILD)/.commit 2>/dev/null || true

run: build
	./$(BUILD)/lgh run $(RUN_ARGS)

# ctest (C API vs the reference, CLI; GPU tier when a device is present), then pytest.
test: build
	@./scripts/test.sh $(BUILD)

# libFuzzer over the C API's arguments and the tuning-cache parser (tests/fuzz/fuzz.sh):
# clang + ASan/UBSan build in $(FUZZ_BUILD), FUZZ_SECONDS per target, one core.
FUZZ_BUILD   ?= build-fuzz
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz:
	@./tests/fuzz/fuzz.sh deps
	@./tests/fuzz/fuzz.sh build $(FUZZ_BUILD)
	@./tests/fuzz/fuzz.sh run $(FUZZ_BUILD) api $(FUZZ_SECONDS)
	@./tests/fuzz/fuzz.sh run $(FUZZ_BUILD) cache $(FUZZ_SECONDS)

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD)
