#!/usr/bin/env bash
# AISHELL-1 (OpenSLR SLR33) -> data/{train,dev,test}, transcripts as characters.
# Usage: local/data.sh [--data-root DIR | --download-dir DIR]
#   default: download into downloads/ (resumable, md5-checked; ~15 GB).
set -euo pipefail
source_opt=(--download-dir downloads)
if [ $# -ge 2 ]; then source_opt=("$1" "$2"); fi
audiokit data prepare aishell "${source_opt[@]}" data
for split in train dev test; do
    audiokit data validate --no-check-audio "data/${split}"
done
