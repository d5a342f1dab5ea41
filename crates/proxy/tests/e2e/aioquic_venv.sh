#!/bin/sh
# Makes, once, the virtual environment with aioquic from PyPI that the suites' Python clients run in
# (the e2e tests and `cargo xtask integration` share it), then prints its python.
# Usage: aioquic_venv.sh VENV_DIR
set -e
venv="$1"
python="$venv/bin/python"
# Pinned: raw_frames.py writes its frames through aioquic's packet builder (private methods).
version=1.7.2
if ! "$python" -c "import aioquic, sys; sys.exit(aioquic.__version__ != '$version')" 2>/dev/null; then
    python3 -m venv "$venv" || {
        echo "python3 -m venv failed (Debian: apt-get install python3-venv)" >&2
        exit 1
    }
    "$python" -m pip install --quiet --disable-pip-version-check "aioquic==$version" || {
        echo "pip install aioquic failed (it needs PyPI)" >&2
        exit 1
    }
fi
echo "$python"
