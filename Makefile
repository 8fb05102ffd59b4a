# netready — two commands: `make demo` and `make test`. See README.md.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTHON ?= python3
# Debian packages the tests, the lab and the demo use (binary:package).
SYSDEPS := influxd:influxdb iperf3:iperf3 irtt:irtt snmpd:snmpd snmpget:snmp \
           sshd:openssh-server nft:nftables tshark:tshark tcpdump:tcpdump ffmpeg:ffmpeg \
           chromium:chromium ip:iproute2 tc:iproute2 ping:iputils-ping \
           systemd-analyze:systemd npm:npm pdftoppm:poppler-utils prometheus:prometheus \
           prometheus-node-exporter:prometheus-node-exporter

.PHONY: unpriv-access all demo demo-venv test lint typecheck bench sysdeps venv lock clean css npm

all: test

$(VENV)/.installed: pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c requirements.lock -e '.[dev]'
	@touch $@

venv: $(VENV)/.installed

# What `make demo` needs and no more (the demo extra: no pytest, ruff, mypy). A dev venv
# (`make venv`) already has it all.
$(VENV)/.demo: pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c requirements.lock -e '.[demo]'
	@touch $@

demo-venv: $(VENV)/.demo

# The report's build and test tools from npm (reports/assets/package-lock.json): axe-core for the
# accessibility test, nhsuk-frontend and sass for `make css`. Reports themselves need no node.
ASSETS := reports/assets
$(ASSETS)/node_modules/.installed: $(ASSETS)/package.json $(ASSETS)/package-lock.json
	npm ci --prefix $(ASSETS) --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

npm: $(ASSETS)/node_modules/.installed

# Rebuild the committed NHS.UK frontend styles (reports/assets/nhsuk-frontend.min.css).
css: npm
	node $(ASSETS)/build.mjs

# Install the Debian packages the tests need, only those missing (needs root).
sysdeps:
	@missing=""; for pair in $(SYSDEPS); do bin=$${pair%%:*}; pkg=$${pair##*:}; \
	  command -v $$bin >/dev/null 2>&1 || [ -x /usr/sbin/$$bin ] || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install:$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# mypy over the whole package as installed (tools/typetree.py lays it out), then bench/ and tools/.
lint: venv
	$(VENV)/bin/ruff check .
	$(PY) tools/typetree.py
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy bench tools agent.py

typecheck: lint

# Two workers, a test file each (a file's lab and servers stay in one process): about half the time.
test: sysdeps venv npm lint unpriv-access
	$(VENV)/bin/pytest -q -n 2 --dist loadfile --durations=15

# Some tests run the CLI as user nobody (tests/test_unprivileged.py, test_icmp.py, test_lab.py):
# the checkout must be readable by others. A clone into `mktemp -d` is mode 0700: open it up
# (what a clone under umask 022 gives), and say so in one line if a parent still hides it.
unpriv-access:
	@chmod o+rx "$(CURDIR)"
	@setpriv --reuid=65534 --regid=65534 --clear-groups test -r "$(CURDIR)/netready/__init__.py" || \
	  { echo "make test: user nobody cannot read $(CURDIR) (a parent directory is not o+x); the unprivileged tests need it" >&2; exit 1; }

# The main job on the embedded store: emulated sites in the lab when root, else loopback.
demo: demo-venv
	$(PY) -m netready.lab.demo

bench: sysdeps venv
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# Refresh the lock file (exact versions of every dependency; `make venv` installs with it).
lock: venv
	@echo '# Exact versions of every dependency, used as pip constraints by `make venv` (refresh: `make lock`).' > requirements.lock
	$(PIP) freeze --exclude-editable | grep -v '^nhs-netready' >> requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .mypy-tree demo-out *.egg-info $(ASSETS)/node_modules
