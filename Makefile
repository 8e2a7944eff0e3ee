# voxflow: `make demo` (install, warm the cpu models, transcribe the sample) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STORE  ?= models
OUTPUT ?= output

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PYANNOTE_METRICS_ENABLED := 0

.PHONY: install demo test lint bench lock check-lock clean

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

# Re-resolve the lock from pyproject's ranges: one universal lock, with markers, for Linux
# x86-64 and macOS arm64 (pyproject's [tool.uv] environments), Python 3.11 to 3.13.
lock: install
	$(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 \
	  --extra test --extra openvino --extra mlx --custom-compile-command "make lock" \
	  --quiet --output-file requirements.lock

# The lock resolves for every platform and Python it is for (needs the package index).
check-lock: install
	scripts/check-lock.sh $(BIN)/uv

clean:
	rm -rf $(VENV) $(OUTPUT) build .pytest_cache
