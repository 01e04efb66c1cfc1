#!/usr/bin/env bash
# AISHELL-1 (178 h Mandarin) -> Conformer-CTC (~29 M), character tokens, scored on dev/test.
# Data: downloads ~15 GB into downloads/ unless you pass --local-data-opts "--data-root /corpora".
# Transcripts are unsegmented characters: %CER is the metric (%WER scores whole sentences).
# Training wants a GPU:
#   ./run.sh --ngpu 1     (or --ngpu N for torchrun DDP, --backend slurm on a cluster)
set -euo pipefail
cd "$(dirname "$0")"
export AUDIOKIT_RUN_CMD="egs/aishell/asr1/run.sh $*"

../../../recipes/asr.sh \
    --train-set train --valid-set dev --test-sets "dev test" \
    --nj 16 --ngpu 1 \
    --token-type char --tokenizer-opts "--latin word --space drop" \
    --train-config conf/train.yaml --decode-config conf/decode.yaml \
    --max-duration 20 --num-avg 10 \
    "$@"
