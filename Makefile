# The README's commands. Each does its own set-up and is safe to run again.
VENV ?= .venv
PYTEST_ARGS ?=
# e.g. ROADMAP_ARGS="--features" or "--output json"
ROADMAP_ARGS ?=
# Test modules run in parallel workers, each module on one worker (their fleets are
# module fixtures), in the order tests/conftest.py gives them (longest first):
# --no-loadscope-reorder keeps xdist from reordering them by their count of tests,
# which put the long single-test Molecule modules last. PYTEST_WORKERS=0 runs
# everything in this process.
PYTEST_WORKERS ?= 3

.PHONY: setup docker doctor test test-unit demo bench roadmap clean

setup:
	@scripts/setup.sh

docker:
	@scripts/ensure-docker.sh

## doctor: check this machine, then build the local cloud's images (stops with hints)
doctor: setup docker
	@$(VENV)/bin/stagecraft doctor --fix

## test: the whole suite (unit tier, then the fleet tier on real containers)
test: doctor
	$(VENV)/bin/pytest -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

## test-unit: only the tests that need no Docker
test-unit: setup
	$(VENV)/bin/pytest -m "not fleet" $(PYTEST_ARGS)

## demo: the main job, end to end
demo: doctor
	@scripts/demo.sh

## bench: run the benchmarks and rewrite docs/benchmarks.md
bench: doctor
	$(VENV)/bin/python -m bench

## roadmap: completion of the feature catalog (spec/features.yaml) by phase
roadmap: setup
	@$(VENV)/bin/python -m tools.roadmap $(ROADMAP_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis dist build
