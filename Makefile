# csst-flatcube: two commands do all set-up on a fresh Debian 12 machine.
#   make run    install what is missing, build, run configs/dr7.yaml
#   make test   install what is missing, build, run every test
BUILD ?= build
JOBS ?= $(shell nproc)
CONFIG ?= configs/dr7.yaml

.PHONY: deps configure build run test bench scaling docs format format-check clean
deps:
	bash scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

configure: deps $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/pipeline/csst-flatcube run $(CONFIG)

test: build
	cd $(BUILD) && ctest --output-on-failure -j2

bench: configure
	bash scripts/install-deps.sh --bench
	cmake --build $(BUILD) -j $(JOBS)
	$(BUILD)/bench/csst-bench network/models/uara_default

# Precision against the number of stars (400 to 25 600; about an hour on 2 cores), ideal and realistic, the
# samples made from the label grid: out/scaling*/index.html and scaling.md (docs/results.md)
SCALING_N ?= 400 1600 6400 25600
scaling: build
	CSST_SCALING_SET="--set sample.synthesis=grid" bash tools/star_scaling.sh configs/ideal.yaml out/scaling_network 10 $(SCALING_N)
	CSST_SCALING_SET="--set sample.synthesis=grid" bash tools/star_scaling.sh configs/realistic.yaml out/scaling_realistic 10 $(SCALING_N)

# Every results table in docs/ from the runs' own JSON (tools/docs_tables.py): tables whose runs are in out/
# are rewritten, the others are listed as kept.
docs:
	/usr/bin/python3 tools/docs_tables.py refresh

# The repository's .clang-format over every C++ source (format: rewrite; format-check: fail on a difference, as CI does)
SOURCES = $(shell git ls-files '*.cpp' '*.h')
format: deps
	@clang-format -i $(SOURCES) && echo "format: $(words $(SOURCES)) files"
format-check: deps
	@clang-format --dry-run -Werror $(SOURCES) && echo "format-check: $(words $(SOURCES)) files as .clang-format writes them"

clean:
	rm -rf $(BUILD)
