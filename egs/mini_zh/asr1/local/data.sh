#!/usr/bin/env bash
# mini_zh: synthesise the offline Mandarin corpus into data/{train,dev,test} (about 2 minutes).
# Usage: local/data.sh [--num-utts N] [--nj N] [--seed S]   (run from egs/mini_zh/asr1)
set -euo pipefail
audiokit data prepare mini-zh "${MINI_ZH_DIR:-data}" "$@"
for split in train dev test; do
    audiokit data validate "${MINI_ZH_DIR:-data}/${split}"
done
