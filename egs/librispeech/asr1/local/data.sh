#!/usr/bin/env bash
# LibriSpeech (OpenSLR SLR12) -> data/<part>, e.g. data/train_clean_100.
# Usage: local/data.sh [--data-root DIR | --download-dir DIR] [--parts a,b,c]
#   default: download into downloads/ (resumable, md5-checked; ~7 GB for the default parts).
set -euo pipefail
parts=train-clean-100,dev-clean,test-clean
source_opt=(--download-dir downloads)
while [ $# -gt 0 ]; do
    case "$1" in
        --data-root|--download-dir) source_opt=("$1" "$2"); shift 2 ;;
        --parts) parts="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 1 ;;
    esac
done
audiokit data prepare librispeech "${source_opt[@]}" --parts "${parts}" data
for part in ${parts//,/ }; do
    audiokit data validate --no-check-audio "data/${part//-/_}"
done
