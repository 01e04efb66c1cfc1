#!/usr/bin/env bash
# mini_zh: synthetic Mandarin (espeak-ng's cmn voice), offline, character tokens, scored by %CER.
# Two models on the same data (see RESULTS.md), each its own experiment under exp/:
#   ./run.sh                                              Conformer-CTC (conf/train_ctc.yaml)
#   ./run.sh --train-config conf/train_paraformer.yaml    Paraformer (stages 1-6 are shared)
# Any recipes/asr.sh option can be added, e.g.
#   ./run.sh --stage 7 --stop-stage 11
#   ./run.sh --num-utts 340 --train-config conf/train_ci.yaml --work-dir /tmp/mini_zh   (CI)
set -euo pipefail
cd "$(dirname "$0")"
export AUDIOKIT_RUN_CMD="egs/mini_zh/asr1/run.sh $*"

num_utts=3400   # all splits: 3000 train, 200 dev, 200 test (the corpus keeps these ratios)
train_config=conf/train_ctc.yaml
decode_config=""
stage=1
stop_stage=11
work_dir=.
train_args=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --num-utts) num_utts="$2"; shift 2 ;;
        --train-config) train_config="$2"; shift 2 ;;
        --decode-config) decode_config="$2"; shift 2 ;;
        --stage) stage="$2"; shift 2 ;;
        --stop-stage) stop_stage="$2"; shift 2 ;;
        --work-dir) work_dir="$2"; args+=("$1" "$2"); shift 2 ;;
        --train-args) train_args="$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
paraformer=false
[[ "$(basename "${train_config}")" != *paraformer* ]] || paraformer=true
if [ -z "${decode_config}" ]; then  # decoding options differ per model family
    decode_config=conf/decode.yaml
    ! ${paraformer} || decode_config=conf/decode_paraformer.yaml
fi

asr() {  # asr.sh with this corpus' settings; $1 $2: first and last stage
    local from="$1" to="$2"
    shift 2
    ../../../recipes/asr.sh \
        --train-set train --valid-set dev --test-sets "dev test" \
        --local-data-opts "--num-utts ${num_utts} --nj 2" \
        --nj 2 \
        --token-type char --tokenizer-opts "--latin word --space drop" \
        --train-config "${train_config}" --decode-config "${decode_config}" \
        --max-duration 20 --num-avg 2 \
        --stage "${from}" --stop-stage "${to}" "${args[@]}" "$@"
}

asr "${stage}" "${stop_stage}" --train-args "${train_args}"
