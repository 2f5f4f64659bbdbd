# Two commands do everything: `make release` and `make test`. Both build .venv first.
# Targets depend on files, so an interrupted `make release` continues where it stopped;
# each stage also resumes on its own (seeds never re-requests an accepted item).

CONFIG ?= configs/default.toml
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= dev,local,deepspeed

layout = $(shell $(PYTHON) -m kit.paths $(CONFIG) $(1))
RUN_DIR := $(call layout,run_dir)
DATASET_DIR := $(call layout,dataset_dir)
MODEL_DIR := $(call layout,model_dir)
SPACE_DIR := $(call layout,space_dir)

.PHONY: all release test bench lint browser generate dataset train evaluate space push clean

all: release

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install torch==2.13.0
	DS_BUILD_OPS=0 $(PY) -m pip install -e ".[$(EXTRAS)]"
	touch $@

$(VENV): $(STAMP)

# seeds rewrites run.json even when interrupted, so a stamp marks a run that finished.
$(RUN_DIR)/.generated: $(STAMP) $(CONFIG) $(wildcard seeds/*.py seeds/templates/*.json)
	$(PY) -m seeds --config $(CONFIG)
	touch $@

$(DATASET_DIR)/README.md: $(RUN_DIR)/.generated $(wildcard dataset_builder/*.py)
	$(PY) -m dataset_builder --config $(CONFIG)

$(MODEL_DIR)/training_record.json: $(DATASET_DIR)/README.md $(wildcard training/*.py)
	$(PY) -m training --config $(CONFIG)

$(MODEL_DIR)/README.md: $(MODEL_DIR)/training_record.json $(CONFIG) $(wildcard model_card/*.py model_card/*.json model_card/*.md)
	$(PY) -m model_card --config $(CONFIG)

$(SPACE_DIR)/app.py: $(MODEL_DIR)/README.md $(wildcard space/*.py)
	$(PY) -m space --config $(CONFIG)

generate: $(RUN_DIR)/.generated
dataset: $(DATASET_DIR)/README.md
train: $(MODEL_DIR)/training_record.json
evaluate: $(MODEL_DIR)/README.md
space: $(SPACE_DIR)/app.py

push: $(SPACE_DIR)/app.py
	$(PY) -m release --config $(CONFIG)

release: push

# The Space's browser test drives Debian's headless Chromium through chromedriver.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  (apt-get update -q && apt-get install -y -q chromium chromium-driver fonts-noto-cjk)

test: $(STAMP) browser
	$(PY) -m ruff check .
	$(PY) -m pytest -q -ra

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	$(PY) -m bench --config $(CONFIG)

clean:
	rm -rf $(call layout,build_dir) $(RUN_DIR) .pytest_cache
