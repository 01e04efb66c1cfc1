#!/usr/bin/env bash
# mini_en: synthesise the offline English corpus into data/{train,dev,test} (22.05 kHz espeak-ng
# voices; stage 2 of recipes/codec.sh resamples it to the codec's rate). Same corpus as asr1.
# Usage: local/data.sh [--num-utts N] [--nj N] [--seed S]   (run from egs/mini_en/codec1)
set -euo pipefail
audiokit data prepare mini-en "${MINI_EN_DIR:-data}" "$@"
for split in train dev test; do
    audiokit data validate "${MINI_EN_DIR:-data}/${split}"
done
