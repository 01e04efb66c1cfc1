#!/usr/bin/env bash
# Source this to use `audiokit` as the recipe does (set AUDIOKIT_VENV or activate a venv first).
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/recipes/utils/path.sh"
