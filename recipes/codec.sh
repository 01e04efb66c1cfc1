#!/usr/bin/env bash
# Corpus-independent neural codec recipe: an egs/<corpus>/codec1/run.sh sets the corpus
# variables and calls this script from its own folder (conf/ and local/ are read there).
# Every stage only sequences `audiokit` commands, skips itself when its done-marker exists and
# logs to <exp>/logs/; a failing step prints the tail of its log.
set -euo pipefail

help_message=$(cat <<'EOF'
Usage: recipes/codec.sh [options]   (run from egs/<corpus>/codec1)
Stages:
   1 data preparation (local/data.sh)
   2 resampling to the codec's rate (new data dirs + wav files, only where needed)
   3 training (audiokit train; a tokenizer first when --token-type is set, e.g. for qdac)
   4 packing the model dir (audiokit model pack)
   5 evaluation of the test sets (audiokit codec eval) and the Opus baseline at the same
     bitrates -> <exp>/RESULTS.md
Options (default in brackets):
  --stage N --stop-stage N  stages to run [1, 5]; a done stage is skipped (delete its .done to redo)
  --nj N                    parallel processes for data steps [4]
  --ngpu N                  GPUs for training: 0 = CPU, N > 1 = torchrun DDP [0]
  --backend local|slurm     where jobs run [local]; --slurm-opts "..." adds sbatch options
  --work-dir DIR            where data/, dump/, exp/ and RESULTS.md go [.]
  --train-set / --valid-set / --test-sets "a b"   data dir names under data/
  --train-config FILE       codec YAML (data.task: codec; its data.sample_rate is the codec rate)
  --train-args "k=v ..."    overrides for `audiokit train` (e.g. "train.epochs=3")
  --local-data-opts "..."   options for local/data.sh
  --token-type none|char|bpe --nbpe N --tokenizer-opts "..."   stage 3 tokenizer (qdac) [none]
  --eval-codebooks "K ..."  RVQ codebook counts to evaluate ("" = all of them) [""]
  --opus-bitrates "B ..."   Opus kbit/s ("" = the evaluated codec bitrates, at least 6) [""]
  --exp-name NAME           experiment folder under exp/ [codec_<train config name>]
EOF
)

# ---- options -------------------------------------------------------------------------------
stage=1
stop_stage=5
nj=4
ngpu=0
backend=local
slurm_opts=""
work_dir=.
train_set=""
valid_set=""
test_sets=""
train_config=""
train_args=""
local_data_opts=""
token_type=none
nbpe=500
tokenizer_opts=""
eval_codebooks=""
opus_bitrates=""
exp_name=""

recipes_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
utils="${recipes_dir}/utils"
bench="${recipes_dir}/../scripts/bench/codec_eval.py"
# shellcheck source=utils/parse_options.sh
. "${utils}/parse_options.sh"
if [ $# -gt 0 ]; then
    echo "$0: unexpected argument '$1' (--help lists the options)" >&2
    exit 1
fi
# shellcheck source=utils/path.sh
. "${utils}/path.sh"

egs_dir="$(pwd)"
# shellcheck source=utils/steps.sh
. "${utils}/steps.sh"

[ -n "${train_set}" ] && [ -n "${valid_set}" ] && [ -n "${test_sets}" ] ||
    die "set --train-set, --valid-set and --test-sets (the egs run.sh normally does)"
[ -f "${train_config}" ] || die "--train-config '${train_config}' not found"
[ -f "${egs_dir}/local/data.sh" ] || [ "${stage}" -gt 1 ] ||
    die "${egs_dir}/local/data.sh not found; run this from egs/<corpus>/codec1"
case "${token_type}" in none|char|bpe|unigram) ;; *) die "--token-type ${token_type}: use none, char, bpe or unigram" ;; esac
[[ "${ngpu}" =~ ^[0-9]+$ ]] || die "--ngpu ${ngpu} must be a number"
train_config="$(cd "$(dirname "${train_config}")" && pwd)/$(basename "${train_config}")"

# the codec's rate: data.sample_rate of the config (the trainer gives it to the model)
sample_rate=$("${AUDIOKIT_PYTHON}" -c '
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1], encoding="utf-8")) or {}
print(int((cfg.get("data") or {}).get("sample_rate") or 16000))' "${train_config}") ||
    die "cannot read data.sample_rate from ${train_config}"

mkdir -p "${work_dir}"
cd "${work_dir}"  # every path below is relative to the work dir
exp_name="${exp_name:-codec_$(basename "${train_config}" .yaml)}"
exp="exp/${exp_name}"
logdir="${exp}/logs"
mkdir -p "${logdir}"
dump="dump/sr${sample_rate}"
token_dir="data/token_list/${token_type}$([ "${token_type}" = char ] || echo "${nbpe}")"
packed="${exp}/packed"


log "recipe: $(basename "$(dirname "${egs_dir}")")/$(basename "${egs_dir}") in ${PWD}, stages ${stage}-${stop_stage}, exp ${exp}, ${sample_rate} Hz"

if want 1; then
    log "stage 1: data preparation"
    # shellcheck disable=SC2086  # user options split on spaces
    run 1.data data -- "${egs_dir}/local/data.sh" ${local_data_opts}
fi

if want 2; then
    log "stage 2: audio at ${sample_rate} Hz -> ${dump}"
    for x in "${train_set}" "${valid_set}" ${test_sets}; do
        run "2.resample.${x}" "${dump}/${x}" -- audiokit codec resample-data "data/${x}" \
            "${dump}/${x}" --sample-rate "${sample_rate}" --nj "${nj}" --overwrite
    done
fi

if want 3; then
    data_args=("data.train=${dump}/${train_set}" "data.valid=${dump}/${valid_set}")
    if [ "${token_type}" != none ]; then
        log "stage 3: ${token_type} tokenizer -> ${token_dir}"
        size_opt=()
        [ "${token_type}" = char ] || size_opt=(--vocab-size "${nbpe}")
        # shellcheck disable=SC2086
        run 3.tokenizer "${token_dir}" -- audiokit tokenizer train "${dump}/${train_set}" \
            "${token_dir}" --type "${token_type}" "${size_opt[@]}" ${tokenizer_opts}
        data_args+=("data.tokenizer=${token_dir}")
    fi
    log "stage 3: training on ${dump}/${train_set} with ${ngpu} GPU(s) -> ${exp}"
    train_cmd=(audiokit train)
    device=cpu
    if [ "${ngpu}" -gt 1 ]; then
        train_cmd=(torchrun --standalone --nproc_per_node "${ngpu}" -m audiokit train)
    fi
    [ "${ngpu}" -eq 0 ] || device=cuda
    # --resume: an interrupted run continues from its latest checkpoint (fresh if none)
    # shellcheck disable=SC2086
    run 3.train "${exp}/train.done" --gpus "${ngpu}" -- "${train_cmd[@]}" --config "${train_config}" \
        --exp-dir "${exp}" --resume --device "${device}" "${data_args[@]}" ${train_args}
fi

if want 4; then
    log "stage 4: packing (best checkpoint by train.best_metric) -> ${packed}"
    run 4.pack "${packed}.done" -- audiokit model pack --exp-dir "${exp}" --out "${packed}" --overwrite
fi

if want 5; then
    for x in ${test_sets}; do
        out="${exp}/eval_${x}"
        log "stage 5: evaluating ${x} -> ${out}"
        mkdir -p "${out}"
        for k in ${eval_codebooks:-all}; do
            k_opt=()
            [ "${k}" = all ] || k_opt=(--n-codebooks "${k}")
            run "5.eval.${x}.k${k}" "${out}/codec_k${k}.done" -- audiokit codec eval --model "${packed}" \
                --data "${dump}/${x}" "${k_opt[@]}" --output json --out "${out}/codec_k${k}.json" --overwrite
        done
        rates="${opus_bitrates}"
        if [ -z "${rates}" ]; then  # the codec's bitrates, raised to libopus's 6 kbit/s minimum
            rates=$("${AUDIOKIT_PYTHON}" -c '
import json, math, sys
rates = {max(6.0, math.ceil(json.load(open(p))["kbps"] * 10) / 10) for p in sys.argv[1:]
         if json.load(open(p)).get("kbps")}
print(" ".join(f"{r:g}" for r in sorted(rates)))' "${out}"/codec_k*.json)
        fi
        if [ -n "${rates}" ] && ! command -v opusenc >/dev/null && ! command -v ffmpeg >/dev/null; then
            log "  no opusenc/ffmpeg: Opus baseline skipped (apt-get install opus-tools)"
            rates=""
        fi
        for b in ${rates}; do
            run "5.opus.${x}.${b}" "${out}/opus_${b}.done" -- audiokit codec eval --opus "${b}" \
                --sample-rate "${sample_rate}" --data "${dump}/${x}" --output json --out "${out}/opus_${b}.json" --overwrite
        done
        "${AUDIOKIT_PYTHON}" "${bench}" --json "${out}"/codec_k*.json $(ls "${out}"/opus_*.json 2>/dev/null) \
            --title "${x}: ${exp_name} vs Opus (${sample_rate} Hz)" > "${out}/RESULTS.md" ||
            die "could not write ${out}/RESULTS.md"
        cat "${out}/RESULTS.md"
    done
    {
        echo "# RESULTS: $(basename "$(dirname "${egs_dir}")") ${exp_name}"
        echo
        echo "Produced by \`${AUDIOKIT_RUN_CMD:-recipes/codec.sh}\` on $(date -u '+%Y-%m-%d %H:%M UTC') ($(audiokit --version))."
        echo "Experiment: \`${exp}\`; model: \`${packed}\`."
        for x in ${test_sets}; do echo; cat "${exp}/eval_${x}/RESULTS.md"; done
    } > "${exp}/RESULTS.md.tmp" && mv "${exp}/RESULTS.md.tmp" "${exp}/RESULTS.md"
    log "  wrote ${exp}/RESULTS.md"
fi
log "done: stages ${stage}-${stop_stage}"
if want 4; then
    echo "packed model: $(cd "${packed}" && pwd)"  # last line: scripts can pick it up
fi
