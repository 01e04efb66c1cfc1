#!/usr/bin/env bash
# Environment for the recipes: makes sure `audiokit` is on PATH (sourced by recipes/asr.sh).
# Set AUDIOKIT_VENV to a virtualenv holding audiokit, or activate one before running.
if [ -n "${AUDIOKIT_VENV:-}" ]; then
    export PATH="${AUDIOKIT_VENV}/bin:${PATH}"
fi
if ! command -v audiokit >/dev/null 2>&1; then
    echo "error: 'audiokit' is not on PATH; activate the virtualenv where it is installed" \
         "(pip install -e .) or set AUDIOKIT_VENV=/path/to/venv" >&2
    exit 2
fi
export PYTHONUNBUFFERED=1  # logs show progress as it happens
# The Python that runs audiokit (helper scripts need its packages, e.g. PyYAML).
_ak_bin="$(dirname "$(command -v audiokit)")"
if [ -z "${AUDIOKIT_PYTHON:-}" ]; then
    if [ -x "${_ak_bin}/python" ]; then AUDIOKIT_PYTHON="${_ak_bin}/python"; else AUDIOKIT_PYTHON=python3; fi
fi
export AUDIOKIT_PYTHON
unset _ak_bin
