# Two set-up-free entry points (see README): `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[train,jax,onnx,quant,openvino,dicom,dev]"
	# onnx2tf / tf-keras / tf2onnx pin old TF and numpy: install without their pins (verified in shared/STACK.md)
	$(BIN)/python -m pip install -q --no-deps onnx2tf==1.29.24 tf-keras==2.21.0 tf2onnx==1.17.0
	# PyTorch (CPU) only makes a test ONNX model; take it only from a local wheel (no multi-GB download):
	# without it that one test skips with its reason.
	-$(BIN)/python -m pip download -q --no-index --no-deps torch==2.13.0 -d $(VENV)/.torch-wheel 2>/dev/null \
	  && $(BIN)/python -m pip install -q $(VENV)/.torch-wheel/torch-*.whl \
	  || echo "no local torch 2.13.0 wheel: the PyTorch->ONNX test will skip"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/edge-boneage demo --out out/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf $(VENV) out
