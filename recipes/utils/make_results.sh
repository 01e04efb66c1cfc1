#!/usr/bin/env bash
# Write RESULTS.md: one table row per scored test set, with the command behind the numbers.
# Usage: make_results.sh OUT.md TITLE COMMAND EXP_DIR SCORE_DIR...
#   each SCORE_DIR holds wer.log and cer.log (`audiokit score` output) and a `name` file.
set -euo pipefail
out="$1" title="$2" command="$3" exp="$4"; shift 4

metric() {  # metric LOG KIND -> "12.34" from a "%KIND 12.34 [ ... ]" line, or "n/a"
    local v
    v=$(grep -m1 "^%$2 " "$1" 2>/dev/null | awk '{print $2}')
    echo "${v:-n/a}"
}
detail() {  # detail LOG KIND -> the bracketed counts "[ 1 / 5, 0 ins, 0 del, 1 sub ]"
    grep -m1 "^%$2 " "$1" 2>/dev/null | sed 's/^[^[]*//' || true
}

commit=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --short HEAD 2>/dev/null || echo unknown)
version=$(audiokit --version 2>/dev/null || echo "audiokit ?")
tmp="${out}.tmp.$$"
{
    echo "# ${title}"
    echo
    echo "Produced by \`${command}\` on $(date -u '+%Y-%m-%d %H:%M UTC') (${version}, commit ${commit})."
    echo "Experiment: \`${exp}\`."
    echo
    echo "| test set | utts | %CER | %WER | WER errors |"
    echo "| --- | ---: | ---: | ---: | --- |"
    for dir in "$@"; do
        name=$(cat "${dir}/name")
        utts=$(wc -l < "${dir}/hyp.txt" | tr -d ' ')
        echo "| ${name} | ${utts} | $(metric "${dir}/cer.log" CER) | $(metric "${dir}/wer.log" WER)" \
             "| $(detail "${dir}/wer.log" WER) |"
    done
    echo
    echo "Per-utterance alignments: \`wer/result.txt\` and \`cer/result.txt\` in ${exp}/decode_<set>/score/."
} > "${tmp}"
mv "${tmp}" "${out}"
