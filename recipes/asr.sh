#!/usr/bin/env bash
# Corpus-independent ASR recipe (ESPnet/Kaldi style): an egs/<corpus>/asr1/run.sh sets the
# corpus variables and calls this script from its own folder (conf/ and local/ are read there).
# Every stage only sequences `audiokit` commands, skips itself when its done-marker exists and
# logs to <exp>/logs/; a failing step prints the tail of its log.
set -euo pipefail

help_message=$(cat <<'EOF'
Usage: recipes/asr.sh [options]   (run from egs/<corpus>/asr1)
Stages:
   1 data preparation (local/data.sh)       7 training (audiokit train; torchrun if --ngpu > 1)
   2 speed perturbation (data copies)       8 checkpoint averaging
   3 audio formatting (+ optional fbank)    9 decoding of the test sets
   4 filtering (short/long/empty text)     10 scoring, RESULTS.md
   5 tokenizer and token list              11 packing the model dir
   6 global CMVN statistics
Options (default in brackets):
  --stage N --stop-stage N  stages to run [1, 11]; a done stage is skipped (delete its .done to redo)
  --nj N                    parallel processes for data/feature/decoding steps [4]
  --ngpu N                  GPUs for training: 0 = CPU, N > 1 = torchrun DDP [0]
  --backend local|slurm     where jobs run [local]; --slurm-opts "..." adds sbatch options
  --work-dir DIR            where data/, dump/, exp/ and RESULTS.md go [.]
  --train-set / --valid-set / --test-sets "a b"   data dir names under data/
  --train-config FILE --decode-config FILE        YAML (conf/train.yaml, conf/decode.yaml)
  --train-args "k=v ..."    overrides for `audiokit train` (e.g. "train.epochs=3")
  --local-data-opts "..."   options for local/data.sh
  --speed-perturb-factors "0.9 1.0 1.1"   stage 2 data copies ("": skip the stage)
  --feats-type raw|fbank    raw: features on the fly; fbank: dump features in stage 3 [raw]
  --fbank-conf FILE         Kaldi fbank config for dumped/CMVN features [conf/fbank.conf]
  --max-duration S          stage 4 drops longer utterances [20]
  --token-type char|bpe|unigram --nbpe N --tokenizer-opts "..."   stage 5 [char]
  --cmvn-num-utts N         utterances whose features give the CMVN stats (raw mode) [2000]
  --num-avg N               checkpoints averaged in stage 8 [5]
  --exp-name NAME           experiment folder under exp/ [asr_<train config name>]
EOF
)

# ---- options -------------------------------------------------------------------------------
stage=1
stop_stage=11
nj=4
ngpu=0
backend=local
slurm_opts=""
work_dir=.
train_set=""
valid_set=""
test_sets=""
train_config=conf/train.yaml
decode_config=conf/decode.yaml
train_args=""
local_data_opts=""
speed_perturb_factors=""
feats_type=raw
fbank_conf=conf/fbank.conf
max_duration=20
token_type=char
nbpe=5000
tokenizer_opts=""
cmvn_num_utts=2000
num_avg=5
exp_name=""
decode_nj=""

recipes_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
utils="${recipes_dir}/utils"
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
[ -f "${train_config}" ] || die "--train-config ${train_config} not found"
[ -f "${egs_dir}/local/data.sh" ] || [ "${stage}" -gt 1 ] ||
    die "${egs_dir}/local/data.sh not found; run this from egs/<corpus>/asr1"
case "${feats_type}" in raw|fbank) ;; *) die "--feats-type ${feats_type}: use raw or fbank" ;; esac
case "${token_type}" in char|bpe|unigram) ;; *) die "--token-type ${token_type}: use char, bpe or unigram" ;; esac
[[ "${ngpu}" =~ ^[0-9]+$ ]] || die "--ngpu ${ngpu} must be a number"
train_config="$(cd "$(dirname "${train_config}")" && pwd)/$(basename "${train_config}")"
[ -z "${decode_config}" ] || [ ! -f "${decode_config}" ] ||
    decode_config="$(cd "$(dirname "${decode_config}")" && pwd)/$(basename "${decode_config}")"
[ ! -f "${fbank_conf}" ] || fbank_conf="$(cd "$(dirname "${fbank_conf}")" && pwd)/$(basename "${fbank_conf}")"
decode_nj="${decode_nj:-${nj}}"

mkdir -p "${work_dir}"
cd "${work_dir}"  # every path below is relative to the work dir
exp_name="${exp_name:-asr_$(basename "${train_config}" .yaml)}"
exp="exp/${exp_name}"
logdir="${exp}/logs"
mkdir -p "${logdir}"
data_feats=dump/raw
token_dir="data/token_list/${token_type}$([ "${token_type}" = char ] || echo "${nbpe}")"
stats_dir="${exp}/asr_stats"
sp_train="${train_set}"
[ -z "${speed_perturb_factors}" ] || sp_train="${train_set}_sp"

filtered() { echo "${data_feats}/${1}_filtered"; }

log "recipe: $(basename "$(dirname "${egs_dir}")")/$(basename "${egs_dir}") in ${PWD}, stages ${stage}-${stop_stage}, exp ${exp}"

if want 1; then
    log "stage 1: data preparation"
    # shellcheck disable=SC2086  # user options split on spaces
    run 1.data data -- "${egs_dir}/local/data.sh" ${local_data_opts}
fi

if want 2 && [ -n "${speed_perturb_factors}" ]; then
    log "stage 2: speed perturbation (${speed_perturb_factors})"
    run 2.speed_perturb "data/${sp_train}" -- audiokit feats speed-perturb "data/${train_set}" \
        "data/${sp_train}" --factors "${speed_perturb_factors// /,}" --overwrite
fi

if want 3; then
    log "stage 3: audio formatting (${feats_type})"
    for x in "${sp_train}" "${valid_set}" ${test_sets}; do
        # sorted, consistent copy with absolute audio paths; segments and other sample rates
        # are handled when the audio is read (training, decoding) or in the feature dump
        run "3.format.${x}" "${data_feats}/${x}" -- audiokit data fix "data/${x}" \
            --out "${data_feats}/${x}" --overwrite
        if [ "${feats_type}" = fbank ] && [[ " ${test_sets} " != *" ${x} "* ]]; then
            run "3.fbank.${x}" "dump/fbank/${x}" -- audiokit feats extract "${data_feats}/${x}" \
                "dump/fbank/${x}" --config "${fbank_conf}" --nj "${nj}" --resample
        fi
    done
fi

if want 4; then
    log "stage 4: filtering (subsampling from ${train_config##*/}, max ${max_duration} s, text)"
    for x in "${sp_train}" "${valid_set}"; do
        run "4.filter.${x}" "$(filtered "${x}")" -- audiokit data filter "${data_feats}/${x}" \
            "$(filtered "${x}")" --train-config "${train_config}" --max-duration "${max_duration}" \
            --nj "${nj}" --overwrite
    done
fi

if want 5; then
    log "stage 5: ${token_type} tokenizer -> ${token_dir}"
    size_opt=()
    [ "${token_type}" = char ] || size_opt=(--vocab-size "${nbpe}")
    # shellcheck disable=SC2086
    run 5.tokenizer "${token_dir}" -- audiokit tokenizer train "$(filtered "${sp_train}")" \
        "${token_dir}" --type "${token_type}" "${size_opt[@]}" ${tokenizer_opts}
fi

if want 6; then
    log "stage 6: global CMVN statistics -> ${stats_dir}/cmvn.npz"
    if [ "${feats_type}" = fbank ]; then
        run 6.cmvn "${stats_dir}" -- audiokit feats compute-cmvn "dump/fbank/${sp_train}" "${stats_dir}"
    else
        total=$(wc -l < "$(filtered "${sp_train}")/text")
        n=$(( cmvn_num_utts < total ? cmvn_num_utts : total ))
        run 6.cmvn_subset "${stats_dir}/subset" -- audiokit data subset "$(filtered "${sp_train}")" \
            "${stats_dir}/subset" --random "${n}" --overwrite
        run 6.cmvn_fbank "${stats_dir}/feats" -- audiokit feats extract "${stats_dir}/subset" \
            "${stats_dir}/feats" --config "${fbank_conf}" --nj "${nj}" --resample
        run 6.cmvn "${stats_dir}" -- audiokit feats compute-cmvn "${stats_dir}/feats" "${stats_dir}"
    fi
fi

if want 7; then
    log "stage 7: training on $(filtered "${sp_train}") with ${ngpu} GPU(s) -> ${exp}"
    train_cmd=(audiokit train)
    device=cpu
    if [ "${ngpu}" -gt 1 ]; then
        train_cmd=(torchrun --standalone --nproc_per_node "${ngpu}" -m audiokit train)
    fi
    [ "${ngpu}" -eq 0 ] || device=cuda
    data_args=("data.train=$(filtered "${sp_train}")" "data.valid=$(filtered "${valid_set}")"
               "data.tokenizer=${token_dir}" "data.cmvn=${stats_dir}/cmvn.npz")
    if [ "${feats_type}" = fbank ]; then
        data_args+=("data.feats_scp=dump/fbank/${sp_train}" "data.valid_feats_scp=dump/fbank/${valid_set}")
    fi
    # --resume: an interrupted run continues from its latest checkpoint (fresh if none)
    # shellcheck disable=SC2086
    run 7.train "${exp}/train.done" --gpus "${ngpu}" -- "${train_cmd[@]}" --config "${train_config}" \
        --exp-dir "${exp}" --resume --device "${device}" "${data_args[@]}" ${train_args}
fi

avg_weights() {  # the averaged weights stage 8 writes (n clamped to the epochs validated)
    local done_epochs n
    done_epochs=$(wc -l < "${exp}/valid_metrics.jsonl" 2>/dev/null || echo 0)
    n=$(( num_avg < done_epochs ? num_avg : done_epochs ))
    [ "${n}" -ge 1 ] || die "${exp}/valid_metrics.jsonl has no validated epoch; run stage 7 first"
    echo "${exp}/avg_${n}.safetensors"
}

if want 8; then
    weights=$(avg_weights)
    n=$(basename "${weights}" .safetensors); n="${n#avg_}"
    log "stage 8: averaging the ${n} best checkpoint(s) -> ${weights}"
    [ "${n}" -eq "${num_avg}" ] || log "  (only ${n} validated epoch(s); --num-avg ${num_avg} lowered)"
    run 8.average "${weights%.safetensors}.done" -- audiokit model average --exp-dir "${exp}" --num "${n}" \
        --out "${weights}"
fi

decode_model="${exp}/decode_model"
if want 9; then
    log "stage 9: decoding ${test_sets}"
    weights=$(avg_weights)
    run 9.pack "${decode_model}.done" -- audiokit model pack --exp-dir "${exp}" --weights "${weights}" \
        --out "${decode_model}" --overwrite
    decode_opts=()
    if [ -n "${decode_config}" ]; then
        [ -f "${decode_config}" ] || die "--decode-config ${decode_config} not found"
        opts_text=$("${AUDIOKIT_PYTHON}" "${utils}/yaml_to_opts.py" "${decode_config}")
        [ -z "${opts_text}" ] || mapfile -t decode_opts <<< "${opts_text}"
    fi
    for x in ${test_sets}; do
        run "9.decode.${x}" "${exp}/decode_${x}" -- audiokit asr decode --model "${decode_model}" \
            --data "${data_feats}/${x}" --out "${exp}/decode_${x}" --nj "${decode_nj}" "${decode_opts[@]}"
    done
fi

if want 10; then
    log "stage 10: scoring -> ${exp}/RESULTS.md and RESULTS.md"
    score_dirs=()
    for x in ${test_sets}; do
        d="${exp}/decode_${x}/score"
        mkdir -p "${d}"
        echo "${x}" > "${d}/name"
        cp "${exp}/decode_${x}/text" "${d}/hyp.txt"
        for kind in wer cer; do
            opt=()
            [ "${kind}" = wer ] || opt=(--cer)
            "${utils}/run_jobs.sh" "${d}/${kind}.log" audiokit score --ref "${data_feats}/${x}/text" \
                --hyp "${d}/hyp.txt" --out "${d}/${kind}" "${opt[@]}" || die "scoring ${x} failed"
        done
        grep -h '^%[WC]ER' "${d}/wer.log" "${d}/cer.log" | sed "s/^/  ${x}: /"
        score_dirs+=("${d}")
    done
    "${utils}/make_results.sh" "${exp}/RESULTS.md" "RESULTS: $(basename "$(dirname "${egs_dir}")") ${exp_name}" \
        "${AUDIOKIT_RUN_CMD:-recipes/asr.sh}" "${exp}" "${score_dirs[@]}"
    # The corpus-level RESULTS.md is rewritten only while it is ours: once someone edits it
    # (drops the marker line), later runs leave it alone.
    marker="<!-- written by recipes/asr.sh stage 10; remove this line to keep your edits -->"
    if [ ! -f RESULTS.md ] || grep -qF "${marker}" RESULTS.md; then
        { cat "${exp}/RESULTS.md"; echo; echo "${marker}"; } > RESULTS.md.tmp
        mv RESULTS.md.tmp RESULTS.md
    else
        log "  RESULTS.md has been edited: kept as it is; this run's table is ${exp}/RESULTS.md"
    fi
fi

packed="${exp}/packed"
if want 11; then
    log "stage 11: packing -> ${packed}"
    weights=$(avg_weights)
    run 11.pack "${packed}.done" -- audiokit model pack --exp-dir "${exp}" --weights "${weights}" \
        --out "${packed}" --overwrite
    [ ! -f "${exp}/RESULTS.md" ] || cp "${exp}/RESULTS.md" "${packed}/RESULTS.md"
fi
log "done: stages ${stage}-${stop_stage}"
if want 11; then
    echo "packed model: $(cd "${packed}" && pwd)"  # last line: scripts can pick it up
fi
