#!/usr/bin/env bash
# Step helpers shared by the stage pipelines (recipes/asr.sh, recipes/codec.sh); source it after
# the options are parsed. Uses: stage, stop_stage, utils, logdir, backend, slurm_opts, exp_name, nj.

die() { echo "error: $*" >&2; exit 2; }
log() { echo "$(date '+%H:%M:%S') $*"; }

# run TAG MARKER [run_jobs options...] -- COMMAND...: run COMMAND as one logged job unless
# MARKER exists, then create it. MARKER is DIR/.done for data dirs (deleting the dir redoes the
# step), a sibling *.done file otherwise.
run() {
    local tag="$1" marker="$2" opts=()
    shift 2
    [[ "${marker}" == *.done ]] || marker="${marker}/.done"
    while [ "$1" != "--" ]; do opts+=("$1"); shift; done
    shift
    if [ -f "${marker}" ]; then
        log "  ${tag}: done already (${marker}), skipped"
        return 0
    fi
    log "  ${tag}: $* (log: ${logdir}/${tag}.log)"
    "${utils}/run_jobs.sh" --backend "${backend}" --slurm-opts "${slurm_opts}" \
        --name "${exp_name}.${tag}" --cpus "${nj}" "${opts[@]}" "${logdir}/${tag}.log" "$@" ||
        die "stage ${tag%%.*} failed; see ${logdir}/${tag}.log"
    mkdir -p "$(dirname "${marker}")"
    touch "${marker}"
}

# want N: stage N is inside [stage, stop_stage]
want() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ]; }
