#!/usr/bin/env bash
# mini_multi: English + Mandarin synthetic corpora as one OWSM multitask corpus (ASR + LID).
# Reuses egs/mini_en/asr1/data and egs/mini_zh/asr1/data when they are prepared, else
# synthesises them there (a few minutes). Usage: local/data.sh [--max-utts N] [--num-utts N]
#   --max-utts N   keep N train utterances per language (dev/test: N/10, at least 20) [0: all]
#   --num-utts N   utterances to synthesise per corpus when a corpus is missing [3400]
set -euo pipefail
max_utts=0
num_utts=3400
while [ $# -gt 0 ]; do
    case "$1" in
        --max-utts) max_utts="$2"; shift 2 ;;
        --num-utts) num_utts="$2"; shift 2 ;;
        *) echo "local/data.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
here="$(cd "$(dirname "$0")/.." && pwd)"
en="${MINI_EN_DATA:-${here}/../../mini_en/asr1/data}"
zh="${MINI_ZH_DATA:-${here}/../../mini_zh/asr1/data}"
[ -f "${en}/test/text" ] || audiokit data prepare mini-en "${en}" --num-utts "${num_utts}" --nj 2
[ -f "${zh}/test/text" ] || audiokit data prepare mini-zh "${zh}" --num-utts "${num_utts}" --nj 2
small=$(( max_utts / 10 > 20 ? max_utts / 10 : 20 ))
for split in train dev test; do
    n=$([ "${split}" = train ] && echo "${max_utts}" || { [ "${max_utts}" -gt 0 ] && echo "${small}" || echo 0; })
    "${AUDIOKIT_PYTHON:-python3}" "${here}/local/make_multitask.py" "data/${split}" "eng:${en}/${split}" "zho:${zh}/${split}" --max-utts "${n}"
    audiokit data fix "data/${split}" --out "data/${split}" --overwrite
    audiokit data validate "data/${split}"
done
