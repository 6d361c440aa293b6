# The two commands of the README:
#   make demo   - runs the SNIPS recipe (default preset) as far as its stages exist
#   make test   - runs the test suite
# Both create .venv and install everything they need (Debian packages included) when missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
PRESET ?= default
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test setup system-deps lint clean-venv

setup: $(STAMP) system-deps

# TTS engines (data_prep/tts.py: espeak-ng, flite, festival with its English voices, MBROLA
# with its English voices and the 16 voices of other languages that speak accented English,
# SVOX Pico), sox, /usr/bin/time, pgrep (procps) and flock (util-linux).
# MBROLA and Pico are in Debian's contrib / non-free components, which
# recipes/common/apt_contrib_nonfree.sh adds when apt lacks them.
MBROLA_ACCENTED := af1 de1 de2 de3 de4 de5 de6 fr1 fr4 gr2 hu1 nl2 pl1 ro1 sw1 sw2
DEBIAN_PACKAGES := espeak-ng sox time procps util-linux flite festival \
	festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
	mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 libttspico-utils \
	$(addprefix mbrola-,$(MBROLA_ACCENTED))

system-deps:
	@if ! dpkg -s $(DEBIAN_PACKAGES) >/dev/null 2>&1; then \
	  echo "Installing Debian packages $(DEBIAN_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && bash recipes/common/apt_contrib_nonfree.sh && \
	  $(SUDO) apt-get install -y -qq $(DEBIAN_PACKAGES) >/dev/null; \
	fi

$(STAMP): setup.cfg pyproject.toml
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $(STAMP)

demo: setup
	cd recipes/snips && PATH="$(CURDIR)/$(VENV)/bin:$$PATH" ./run.sh --preset $(PRESET)

test: setup
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(VENV)/bin/lint-imports

clean-venv:
	rm -rf $(VENV)
