#!/usr/bin/env bash
# mini_multi: a tiny OWSM-CTC (E-Branchformer CTC + interCTC + <lang><task> prefix) trained on the
# synthetic English (mini_en) and Mandarin (mini_zh) corpora for ASR and language ID, on CPU.
# Reuses egs/mini_{en,zh}/asr1/data when prepared. Options (any recipes/asr.sh option too):
#   --max-utts N   train utterances per language [1000]  (dev/test: N/10 per language)
#   --num-utts N   utterances to synthesise per corpus if mini_en/mini_zh data is missing [3400]
#   --stage N --stop-stage N   recipes/asr.sh stages 1-8 and 11 (packing), then 12: decoding with
#                  --lang eng|zho and --lang auto, CER per language, LID accuracy (local/score.py)
#   ./run.sh --max-utts 60 --nbpe 260 --train-config conf/train_ci.yaml --work-dir /tmp/mm  (CI)
set -euo pipefail
cd "$(dirname "$0")"
export AUDIOKIT_RUN_CMD="egs/mini_multi/s2t1/run.sh $*"
. ./path.sh

max_utts=1000
num_utts=3400
nbpe=500
work_dir=.
train_config=conf/train.yaml
exp_name=""
stage=1
stop_stage=12
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --max-utts) max_utts="$2"; shift 2 ;;
        --num-utts) num_utts="$2"; shift 2 ;;
        --nbpe) nbpe="$2"; shift 2 ;;
        --work-dir) work_dir="$2"; shift 2 ;;
        --train-config) train_config="$2"; shift 2 ;;
        --exp-name) exp_name="$2"; shift 2 ;;
        --stage) stage="$2"; shift 2 ;;
        --stop-stage) stop_stage="$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
here="$(pwd)"
exp_name="${exp_name:-asr_$(basename "${train_config}" .yaml)}"
symbols="<na>,<nolang>,<eng>,<zho>,<asr>,<st_eng>,<st_zho>"   # ids 2..8: conf/train*.yaml
common=(--train-set train --valid-set dev --test-sets "test" --work-dir "${work_dir}"
        --local-data-opts "--max-utts ${max_utts} --num-utts ${num_utts}" --nj 2
        --token-type unigram --nbpe "${nbpe}" --tokenizer-opts "--user-defined-symbols ${symbols}"
        --train-config "${train_config}" --exp-name "${exp_name}" --decode-config "" --max-duration 20 --num-avg 2)

# run_asr FIRST LAST: recipes/asr.sh over [FIRST, LAST] intersected with [stage, stop_stage]
run_asr() {
    local first=$(( $1 > stage ? $1 : stage )) last=$(( $2 < stop_stage ? $2 : stop_stage ))
    [ "${first}" -le "${last}" ] || return 0
    ../../../recipes/asr.sh "${common[@]}" "${args[@]}" --stage "${first}" --stop-stage "${last}"
}
run_asr 1 6   # data, format, filter, tokenizer, CMVN
if [ "${stage}" -le 7 ] && [ "${stop_stage}" -ge 7 ]; then
    (cd "${work_dir}" && "${AUDIOKIT_PYTHON}" "${here}/local/check_tokens.py" \
        "data/token_list/unigram${nbpe}" "${here}/${train_config}")
fi
run_asr 7 8   # training, checkpoint averaging
run_asr 11 11 # packing (the generic decoding stages 9-10 know no --lang)
if [ "${stop_stage}" -ge 12 ]; then
    cd "${work_dir}"
    exp="exp/${exp_name}"
    mkdir -p "${exp}/decode_test"
    "${AUDIOKIT_PYTHON}" "${here}/local/score.py" "${exp}/packed" dump/raw/test "${exp}/decode_test" \
        | tee "${exp}/decode_test/scores.txt"
    echo "packed model: $(cd "${exp}/packed" && pwd)"
fi
