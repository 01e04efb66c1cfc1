#!/usr/bin/env bash
# mini_en codecs: train one codec briefly on CPU on the synthetic English corpus, pack it and
# compare it with Opus at the same bitrates. One codec per run, chosen by --codec:
#   rvq_codec (DAC-style, default), encodec, qdac (+ char tokenizer for its ASR branch), codec_vae
# Each conf/<codec>.yaml trains 200-300 steps on 2 CPU cores, 10-20 minutes (measured: rvq_codec,
# 220 steps in 13 min on a busy machine); data synthesis ~1 minute. conf/ci/<codec>.yaml is a
# seconds-long smoke test (the whole CI recipe: under a minute). Any recipes/codec.sh option can be added:
#   ./run.sh --codec encodec
#   ./run.sh --codec qdac --stage 3
#   ./run.sh --num-utts 40 --train-config conf/ci/rvq_codec.yaml --work-dir /tmp/mini_codec   (CI)
set -euo pipefail
cd "$(dirname "$0")"
export AUDIOKIT_RUN_CMD="egs/mini_en/codec1/run.sh $*"

num_utts=3400   # all splits: 3000 train, 200 dev, 200 test (the corpus keeps these ratios)
codec=rvq_codec
train_config=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --num-utts) num_utts="$2"; shift 2 ;;
        --codec) codec="$2"; shift 2 ;;
        --train-config) train_config="$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
train_config="${train_config:-conf/${codec}.yaml}"
[ -f "${train_config}" ] || { echo "error: ${train_config} not found (--codec: rvq_codec, encodec, qdac, codec_vae)" >&2; exit 2; }
token_opts=()
if grep -q '^ *architecture: *qdac' "${train_config}"; then  # QDAC's ASR branch reads text
    token_opts=(--token-type char --tokenizer-opts "--latin char --space keep")
fi
eval_opts=()
if grep -q '^ *architecture: *\(rvq_codec\|qdac\|encodec\)' "${train_config}"; then
    eval_opts=(--eval-codebooks "$(sed -n 's/^# eval-codebooks: *//p' "${train_config}")")
fi

../../../recipes/codec.sh \
    --train-set train --valid-set dev --test-sets "test" \
    --local-data-opts "--num-utts ${num_utts} --nj 2" \
    --nj 2 \
    --train-config "${train_config}" \
    "${token_opts[@]}" "${eval_opts[@]}" \
    "${args[@]}"
