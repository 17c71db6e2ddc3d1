# `make demo` and `make test` do all the set-up on a fresh Debian machine (as root):
# the system tools rig drives, then a venv with rig and its test extras.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(PATH):/usr/sbin:/sbin

# program -> Debian package that brings it
SYSTEM_TOOLS := tcpdump:tcpdump apache2:apache2 sshd:openssh-server nft:nftables \
	tshark:tshark ip:iproute2 ss:iproute2 ping:iputils-ping ps:procps socat:socat \
	chromium:chromium

.PHONY: demo test check system venv bench clean-lab

# The seed scenario is a path problem on purpose: rig exits 1 with its verdict, which is
# the demo working. Usage (2) and infrastructure (3) errors still fail the target.
demo: system venv
	@$(VENV)/bin/rig run --scenario seed; rc=$$?; \
	if [ $$rc -le 1 ]; then echo "make demo: rig exited $$rc (0 clean path, 1 path problem found)"; \
	else exit $$rc; fi

# two workers: what builds namespaces, starts daemons or binds ports runs one test at a
# time on one of them (tests/conftest.py groups it), the pure tests spread over both
test: system venv
	$(PY) -m pytest -q -n 2 --dist loadgroup

# lint and type-check: both must be clean (ruff and mypy come with the test extras);
# both run, so one look shows every finding
check: venv
	@rc=0; \
	$(VENV)/bin/ruff check rig tests || rc=1; \
	$(VENV)/bin/mypy || rc=1; \
	exit $$rc

bench: system venv
	$(PY) bench/diff.py
	$(PY) bench/lab.py

system:
	@missing=""; \
	for pair in $(SYSTEM_TOOLS); do \
		tool=$${pair%%:*}; pkg=$${pair##*:}; \
		command -v $$tool >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

# (rig/capture/_walk.c, _fast.c: the compiled record walk and decode, built by the install; optional)
$(VENV)/.installed: pyproject.toml rig/capture/_walk.c rig/capture/_fast.c rig/capture/_pcap_step.h rig/capture/_buffers.h
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

clean-lab: venv
	$(VENV)/bin/rig clean
