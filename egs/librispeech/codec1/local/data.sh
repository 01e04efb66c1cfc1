#!/usr/bin/env bash
# LibriSpeech (OpenSLR SLR12) -> data/<part> for codec training (16 kHz flac; transcripts are
# only used by qdac). Usage: local/data.sh [--data-root DIR | --download-dir DIR] [--parts a,b]
#   default: download into downloads/ (resumable, md5-checked; ~30 GB for the 460 h default).
set -euo pipefail
parts=train-clean-100,train-clean-360,dev-clean,test-clean
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
if [ -d data/train_clean_100 ] && [ -d data/train_clean_360 ] && [ ! -f data/train_460/wav.scp ]; then
    audiokit data combine data/train_460 data/train_clean_100 data/train_clean_360
fi
