# voxflow: `make demo` (install, warm the cpu models, transcribe the sample) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STORE  ?= models
OUTPUT ?= output

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PYANNOTE_METRICS_ENABLED := 0

.PHONY: install demo test lint bench lock clean

$(VENV)/.installed: pyproject.toml requirements.lock
	scripts/install.sh $(VENV) $(PYTHON)
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/voxflow warm --profile cpu --store $(STORE)
	$(BIN)/voxflow transcribe examples/sample.mp4 --profile cpu --store $(STORE) --output $(OUTPUT)

# A tiny random Whisper exported to OpenVINO IR for the openvino ASR backend's test. The
# exporter (optimum-intel) pins transformers 4.x, so it runs from its own folder, once.
OV_WHISPER := build/tiny-ov-whisper
$(OV_WHISPER): scripts/export-tiny-openvino-whisper.sh | install
	EXPORT_DEPS=build/ov-export-deps PYTHON=$(BIN)/python scripts/export-tiny-openvino-whisper.sh $@

test: install $(OV_WHISPER)
	scripts/system-deps.sh
	VOXFLOW_TEST_OV_WHISPER=$(abspath $(OV_WHISPER)) $(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/transcribe_overhead.py

# Re-resolve the lock from pyproject's ranges in a throwaway venv.
lock:
	rm -rf /tmp/voxflow-lock && $(PYTHON) -m venv /tmp/voxflow-lock
	/tmp/voxflow-lock/bin/pip install -q -e '.[test,openvino]'
	( echo "# Exact versions for a reproducible install (make demo / make test)."; \
	  echo "# Regenerate with: make lock   (pyproject.toml declares the allowed ranges)"; \
	  /tmp/voxflow-lock/bin/pip freeze --exclude-editable ) > requirements.lock

clean:
	rm -rf $(VENV) $(OUTPUT) build .pytest_cache
