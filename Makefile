# The two commands of the README. Both create or reuse .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# constraints.txt locks the whole dependency set (pyproject.toml pins the direct ones); `make lock` rewrites it.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)

.PHONY: demo test install lock clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/mmpipe demo

# Two workers, a test file each at a time (three kept both cores busier but cost 15% more CPU: 11m22s against
# 11m04s), in collection order: tests/conftest.py puts the slowest files first (xdist would otherwise reorder by
# test count and start the long single-test files last). Prints the slowest tests.
test: $(STAMP)
	bash tests/services.sh
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=25 tests

lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt

clean:
	rm -rf mmpipe-data .pytest_cache
