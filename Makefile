# Entry points for people and CI. The build itself is CMake; this file only orders the steps.
BUILD      ?= build
ASAN_BUILD ?= build-asan
SAN_BUILD  ?= build-san
CLANGXX    := $(shell command -v clang++ 2>/dev/null)
JOBS       ?= $(shell nproc)
PACKAGES   := cmake g++ libdnnl-dev libcxxopts-dev nlohmann-json3-dev doctest-dev libstb-dev libjpeg62-turbo-dev \
              libopenmpi-dev openmpi-bin

.PHONY: all deps build run test asan sanitize fuzz bench clean format

all: build

# Install whichever Debian packages are missing; do nothing when all are there.
deps:
	@missing=""; for p in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	else echo "dependencies: all present"; fi

# Configure when the build folder has no generated Makefile. CMake writes CMakeCache.txt before it finds the
# libraries but the Makefile only once configuring succeeded, so a configure that failed (say, before
# `make deps` installed oneDNN) is retried by the next `make build` instead of leaving a folder make cannot use.
$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

# The main job: set up, build, meta-train Prototypical Networks on the built-in glyph dataset (5-way 1-shot),
# then evaluate on its test classes with the standard protocol (600 episodes, 95% interval).
RUN_DIR ?= runs/glyphs-protonet-5w1s
run: deps build
	./$(BUILD)/metafew meta-train --data builtin:glyphs --algo protonet --ways 5 --shots 1 --queries 15 \
	  --iterations 1000 --val-every 500 --log-every 100 --overwrite --out $(RUN_DIR)
	./$(BUILD)/metafew eval --checkpoint $(RUN_DIR) --split test --episodes 600

# Tests run one process at a time: each uses every core through OpenMP, and two at once oversubscribe the
# machine (spinning OpenMP barriers then slow both by an order of magnitude).
test: build
	@if command -v chromium > /dev/null 2>&1; then cd $(BUILD) && ctest --output-on-failure; \
	else echo "make test: chromium not found, so the report's browser test is left out (.ci/run installs chromium)"; \
	  cd $(BUILD) && ctest --output-on-failure -E "headless Chromium"; fi
	@if [ -n "$(CLANGXX)" ]; then $(MAKE) --no-print-directory sanitize; \
	else echo "make test: clang++ not found, so the sanitizer tests and fuzz runs were skipped (.ci/run installs clang)"; fi

# The io, data and cli tests (the code that reads what users and files give it) under AddressSanitizer and
# UndefinedBehaviorSanitizer, built with clang, then a bounded run of each libFuzzer target on its committed
# corpus (tests/fuzz/README.md). Left to the plain build: four cli tests that are long training runs about
# signals and algorithms, not input handling (about 10 minutes under the sanitizers on 2 cores), and the
# tests under mpirun (Open MPI's own allocations would read as leaks).
$(SAN_BUILD)/Makefile:
	CC=clang CXX=clang++ cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMETAFEW_SANITIZE=ON -DMETAFEW_FUZZ=ON

sanitize: $(SAN_BUILD)/Makefile
	cmake --build $(SAN_BUILD) -j $(JOBS) --target metafew metafew_tests fuzz_checkpoint fuzz_config fuzz_image fuzz_scan
	cd $(SAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -R '^(io|data|cli|settings): |^fuzz_' \
	  -E 'SIGINT during validation|independently of the rest|resumes to the same parameters|carried inner state|headless Chromium|mpirun|processes|kill -9|hung process'

# Each fuzz target for 10^6 inputs (FUZZ_RUNS) under ASan + UBSan; counts in bench/results/reliability.md.
FUZZ_RUNS ?= 1000000
fuzz: $(SAN_BUILD)/Makefile
	cmake --build $(SAN_BUILD) -j $(JOBS) --target fuzz_checkpoint fuzz_config fuzz_image fuzz_scan
	for t in checkpoint config image scan; do \
	  tests/fuzz/run.sh $(SAN_BUILD)/fuzz_$$t tests/fuzz/corpus/$$t long $(FUZZ_RUNS) || exit 1; done

asan:
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMETAFEW_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure

bench: build
	./$(BUILD)/conv_bench

format:
	clang-format -i $$(git ls-files '*.h' '*.cpp')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(SAN_BUILD)
