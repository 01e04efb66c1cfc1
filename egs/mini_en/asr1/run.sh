#!/usr/bin/env bash
# mini_en: synthetic English (espeak-ng voices), offline. The whole recipe, data synthesis
# included, takes about 15 minutes on 2 CPU cores. Any recipes/asr.sh option can be added, e.g.
#   ./run.sh --stage 7 --stop-stage 11
#   ./run.sh --num-utts 340 --train-config conf/train_ci.yaml --work-dir /tmp/mini_en   (CI)
set -euo pipefail
cd "$(dirname "$0")"
export AUDIOKIT_RUN_CMD="egs/mini_en/asr1/run.sh $*"

num_utts=3400   # all splits: 3000 train, 200 dev, 200 test (the corpus keeps these ratios)
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --num-utts) num_utts="$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done

../../../recipes/asr.sh \
    --train-set train --valid-set dev --test-sets "test" \
    --local-data-opts "--num-utts ${num_utts} --nj 2" \
    --nj 2 \
    --token-type char --tokenizer-opts "--latin char --space keep" \
    --train-config conf/train.yaml --decode-config conf/decode.yaml \
    --max-duration 20 --num-avg 2 \
    "${args[@]}"
