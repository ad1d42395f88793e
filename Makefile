# The two commands a newcomer needs: `make run` (simulation) and `make test`.
# Everything CI needs is installed from here: nothing installed by hand survives a fresh machine.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# One core, as the benchmarks' figures are quoted (a throttled Pi 4 is about one fast core's worth).
TASKSET := $(shell command -v taskset >/dev/null && echo "taskset -c 0")

.PHONY: setup run test lint bench mosquitto clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	# face_recognition and rapidocr without their metadata's deps (dlib source build, GUI OpenCV):
	# see requirements-nodeps.txt.
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

run: setup
	$(VENV)/bin/edge-agent simulate config/simulation.yaml

# The MQTT tests start a real mosquitto from Debian's packages on loopback ports.
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing mosquitto from Debian's packages"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then \
		echo "installing mosquitto from Debian's packages (sudo)"; \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	else \
		echo "mosquitto is missing and cannot be installed here: install the Debian package 'mosquitto'" \
		     "(sudo apt-get install mosquitto) and run make test again" >&2; exit 1; \
	fi

lint: setup
	$(VENV)/bin/ruff check .

test: setup mosquitto lint
	$(PY) -m pytest -ra

bench: setup mosquitto
	$(TASKSET) $(PY) bench/bench_daemon.py
	$(TASKSET) $(PY) bench/bench_faces.py
	$(TASKSET) $(PY) bench/bench_plates.py
	$(TASKSET) $(PY) bench/bench_uplink.py
	bench/systemd_exposure.sh

clean:
	rm -rf $(VENV) var *.egg-info .pytest_cache .ruff_cache
