#!/usr/bin/env bash
# LibriSpeech 100 h (train-clean-100) -> Conformer-CTC (~29 M), BPE 5000, scored on dev/test-clean.
# Data: downloads ~7 GB into downloads/ unless you pass --local-data-opts "--data-root /corpora".
# For all 960 h: --local-data-opts "--parts train-clean-100,train-clean-360,train-other-500,..."
# and a combined train set (audiokit data combine). Training wants a GPU: --ngpu 1 (or N).
#   ./run.sh --ngpu 4                         # torchrun DDP on 4 GPUs
#   ./run.sh --backend slurm --ngpu 4 --slurm-opts "--partition=gpu --time=2-00:00:00"
set -euo pipefail
cd "$(dirname "$0")"
export AUDIOKIT_RUN_CMD="egs/librispeech/asr1/run.sh $*"

../../../recipes/asr.sh \
    --train-set train_clean_100 --valid-set dev_clean --test-sets "dev_clean test_clean" \
    --local-data-opts "--parts train-clean-100,dev-clean,test-clean" \
    --nj 16 --ngpu 1 \
    --token-type bpe --nbpe 5000 \
    --train-config conf/train.yaml --decode-config conf/decode.yaml \
    --max-duration 30 --num-avg 10 \
    "$@"
