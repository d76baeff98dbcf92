# Two commands set everything up on a fresh machine: `make demo` and `make test`.
# Each creates .venv itself from the lock file (uv: seconds, not minutes).
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
UV      := $(PY) -m uv
STAMP   := $(VENV)/.installed-stamp
BUILD   := build
NBVAL   := --nbval-lax --nbval-current-env --nbval-sanitize-with loom_nb/notebook/sanitize.cfg

.PHONY: venv demo test typecheck lab lock notebooks bench clean receiver

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@$(PY) -m uv --version >/dev/null 2>&1 || $(PY) -m pip install -q --disable-pip-version-check uv
	@test -x $(VPY) || $(UV) venv -q -p $(PY) $(VENV)
	$(UV) pip install -q -p $(VPY) -r requirements.lock
	$(UV) pip install -q -p $(VPY) --no-deps -e .
	@touch $(STAMP)

# The quickstart notebook, executed headless. Offline with the scripted model; with LOOM_MODEL
# (e.g. anthropic:claude-sonnet-5) and its key in the environment, the same notebook uses that model.
demo: $(STAMP)
	@mkdir -p $(BUILD)
	$(VENV)/bin/jupyter nbconvert --to loom-html --execute --ExecutePreprocessor.timeout=600 \
		--output-dir $(BUILD) notebooks/01_quickstart.ipynb
	@echo "Demo written to $(abspath $(BUILD))/01_quickstart.html"

# The layering contracts (pyproject.toml [tool.importlinter]) and the type checker first: they
# take seconds. LOOM_MODEL is unset so that the notebooks run offline and deterministically here.
test: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(VENV)/bin/mypy
	env -u LOOM_MODEL $(VPY) -m pytest tests notebooks $(NBVAL)

# The OTLP receiver the tracing test sends spans to (an MLflow tracking server), in its own venv:
# MLflow's many dependencies stay out of the project's lock. Without it that one test skips.
RECEIVER := .venv-receiver
receiver: $(RECEIVER)/.installed-stamp

$(RECEIVER)/.installed-stamp: tests/otel_receiver/requirements.txt
	@$(PY) -m uv --version >/dev/null 2>&1 || $(PY) -m pip install -q --disable-pip-version-check uv
	@test -x $(RECEIVER)/bin/python || $(UV) venv -q -p $(PY) $(RECEIVER)
	$(UV) pip install -q -p $(RECEIVER)/bin/python -r tests/otel_receiver/requirements.txt
	@touch $@

# The type checker on loom_nb (pyproject.toml [tool.mypy]).
typecheck: $(STAMP)
	$(VENV)/bin/mypy

lab: $(STAMP)
	@$(VPY) -c "import jupyterlab" 2>/dev/null || $(UV) pip install -q -p $(VPY) jupyterlab
	$(VENV)/bin/jupyter lab notebooks

# Re-execute the notebooks in place (offline, final renders only), after a change that alters
# their outputs; nbval then compares against what this stores.
notebooks: $(STAMP)
	env -u LOOM_MODEL LOOM_LIVE=0 $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=600 notebooks/*.ipynb

# Benchmarks beside the peer frameworks (each in its own venv); writes benchmarks/RESULTS.md.
bench: $(STAMP)
	$(PY) benchmarks/run_all.py
	$(VPY) benchmarks/growth.py

# Re-pin after changing dependencies in pyproject.toml.
lock:
	$(UV) pip compile -q pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) $(RECEIVER) $(BUILD) .pytest_cache .mypy_cache
