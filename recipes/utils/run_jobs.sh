#!/usr/bin/env bash
# Run a command as one job or an array of jobs, logging each, on a local machine or on Slurm.
#
# Usage: run_jobs.sh [options] [JOB=A:B] LOG COMMAND [ARGS...]
#   Every "JOB" in LOG and in the command is replaced by the job index (as Kaldi's run.pl).
#   The log starts with the command and ends with "# ended with status N".
#   On failure the tail of each failing job's log is printed and the exit status is 1.
# Options:
#   --backend local|slurm   local: background processes on this machine (default);
#                           slurm: one `sbatch --wait --array` job whose tasks run via `srun`.
#   --cpus N                CPUs per job (Slurm --cpus-per-task; informational locally).
#   --gpus N                GPUs per job (Slurm --gres=gpu:N).
#   --mem SIZE              memory per job (Slurm --mem, e.g. 16G).
#   --name NAME             Slurm job name (default: the log file's name).
#   --slurm-opts "OPTS"     extra sbatch options, e.g. "--partition=gpu --time=1-00:00:00".
#   --tail N                lines of a failing log to print (default 20).
set -uo pipefail

backend=local cpus=1 gpus=0 mem="" name="" slurm_opts="${SLURM_OPTS:-}" tail_lines=20
while [ $# -gt 0 ]; do
    case "$1" in
        --backend) backend="$2"; shift 2 ;;
        --cpus) cpus="$2"; shift 2 ;;
        --gpus) gpus="$2"; shift 2 ;;
        --mem) mem="$2"; shift 2 ;;
        --name) name="$2"; shift 2 ;;
        --slurm-opts) slurm_opts="$2"; shift 2 ;;
        --tail) tail_lines="$2"; shift 2 ;;
        --*) echo "run_jobs.sh: unknown option $1" >&2; exit 1 ;;
        *) break ;;
    esac
done
first=1 last=1 jobvar=""  # without JOB=A:B nothing is substituted
if [[ "${1:-}" =~ ^JOB=([0-9]+):([0-9]+)$ ]]; then
    first="${BASH_REMATCH[1]}" last="${BASH_REMATCH[2]}" jobvar=JOB
    shift
fi
if [ $# -lt 2 ]; then
    echo "usage: run_jobs.sh [options] [JOB=A:B] LOG COMMAND [ARGS...]" >&2
    exit 1
fi
if [ "${first}" -gt "${last}" ]; then
    echo "run_jobs.sh: empty job range JOB=${first}:${last}" >&2
    exit 1
fi
log="$1"; shift
# Quote every argument so the command runs exactly as given (spaces, quotes, globs).
cmd=""
for arg in "$@"; do cmd+="$(printf '%q' "${arg}") "; done
mkdir -p "$(dirname "${log}")"

subst() {  # subst TEXT INDEX: TEXT with JOB replaced by INDEX (when a range was given)
    if [ -n "${jobvar}" ]; then printf "%s\n" "${1//JOB/$2}"; else printf "%s\n" "$1"; fi
}
log_of() { subst "${log}" "$1"; }

run_one() {  # run_one INDEX: the command for one job, with the log's header and footer
    local i="$1" out start status job_cmd
    out="$(log_of "${i}")"
    job_cmd="$(subst "${cmd}" "${i}")"
    start=$(date +%s)
    {
        echo "# ${job_cmd}"
        echo "# started at $(date) on $(hostname)"
    } > "${out}"
    bash -c "${job_cmd}" >> "${out}" 2>&1
    status=$?
    {
        echo "# took $(( $(date +%s) - start )) s"
        echo "# ended with status ${status} at $(date)"
    } >> "${out}"
    return "${status}"
}

report_failures() {  # report_failures INDEX...: the tail of each failing job's log
    local i out
    for i in "$@"; do
        out="$(log_of "${i}")"
        echo "run_jobs.sh: job ${i} failed; last ${tail_lines} lines of ${out}:" >&2
        tail -n "${tail_lines}" "${out}" 2>/dev/null | sed 's/^/    /' >&2
    done
    echo "run_jobs.sh: $# of $(( last - first + 1 )) job(s) failed; full logs: $(log_of '*')" >&2
}

failed=()
case "${backend}" in
local)
    if [ "${first}" -eq "${last}" ]; then
        run_one "${first}" || failed+=("${first}")
    else
        declare -A pids=()
        for ((i = first; i <= last; i++)); do
            run_one "${i}" &
            pids[${i}]=$!
        done
        for ((i = first; i <= last; i++)); do
            wait "${pids[${i}]}" || failed+=("${i}")
        done
    fi
    ;;
slurm)
    for tool in sbatch srun; do
        if ! command -v "${tool}" >/dev/null 2>&1; then
            echo "run_jobs.sh: --backend slurm needs '${tool}' on PATH; run on a Slurm login" \
                 "node or use --backend local" >&2
            exit 1
        fi
    done
    qdir="$(dirname "${log}")/q"
    mkdir -p "${qdir}"
    base="$(basename "${log}" .log)"
    [ -z "${jobvar}" ] || base="${base//JOB/array}"
    name="${name:-${base}}"
    script="${qdir}/${base}.sh"
    self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/run_jobs.sh"
    # The task re-enters this script with the local backend for its own index: same logging.
    {
        echo "#!/usr/bin/env bash"
        echo "cd $(printf '%q' "${PWD}")"
        echo "export PATH=$(printf '%q' "${PATH}")"
        echo "i=\${SLURM_ARRAY_TASK_ID:-${first}}"
        echo "exec srun --ntasks=1 --cpus-per-task=${cpus} bash $(printf '%q' "${self}") \\"
        if [ -n "${jobvar}" ]; then
            echo "    JOB=\${i}:\${i} $(printf '%q' "${log}") ${cmd}"
        else
            echo "    $(printf '%q' "${log}") ${cmd}"
        fi
    } > "${script}"
    chmod +x "${script}"
    sbatch_cmd=(sbatch --wait --parsable --job-name "${name}" --array "${first}-${last}"
                --cpus-per-task "${cpus}" --output "${qdir}/${base}.%a.out")
    [ "${gpus}" -gt 0 ] && sbatch_cmd+=(--gres "gpu:${gpus}")
    [ -n "${mem}" ] && sbatch_cmd+=(--mem "${mem}")
    # shellcheck disable=SC2206  # user-given options are split on spaces on purpose
    [ -n "${slurm_opts}" ] && sbatch_cmd+=(${slurm_opts})
    sbatch_cmd+=("${script}")
    echo "# ${sbatch_cmd[*]}" > "${qdir}/${base}.sbatch"
    "${sbatch_cmd[@]}" >> "${qdir}/${base}.sbatch" 2>&1
    sbatch_status=$?
    # A job's own log says whether it ended well; sbatch's status covers jobs that never ran.
    for ((i = first; i <= last; i++)); do
        if ! tail -n 1 "$(log_of "${i}")" 2>/dev/null | grep -q "^# ended with status 0 "; then
            failed+=("${i}")
        fi
    done
    if [ "${sbatch_status}" -ne 0 ] && [ ${#failed[@]} -eq 0 ]; then
        echo "run_jobs.sh: sbatch failed (status ${sbatch_status}):" >&2
        sed 's/^/    /' "${qdir}/${base}.sbatch" >&2
        exit 1
    fi
    ;;
*)
    echo "run_jobs.sh: unknown --backend ${backend}; use local or slurm" >&2
    exit 1
    ;;
esac

if [ ${#failed[@]} -gt 0 ]; then
    report_failures "${failed[@]}"
    exit 1
fi
exit 0
