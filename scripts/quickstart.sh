#!/usr/bin/env bash
# audiokit quickstart: synthesise a tiny Kaldi data dir, then run the foundation tools on it:
# validate -> info -> fbank extraction (2 jobs) -> CMVN stats -> BPE tokenizer -> scoring.
# Usage: scripts/quickstart.sh [WORK_DIR]   (default: ./quickstart; an existing dir is reused)
set -euo pipefail
work=${1:-quickstart}
mkdir -p "$work"

echo "== 1. synthesising a tiny data dir in $work/data"
python -m audiokit.data.synthetic "$work/data"

echo "== 2. validating and summarising it"
audiokit data validate "$work/data"
audiokit data info "$work/data"

echo "== 3. 80-bin Kaldi fbank with 2 parallel jobs, then global CMVN statistics"
audiokit feats extract --type fbank --num-mel-bins 80 --dither 0 --nj 2 "$work/data" "$work/fbank"
audiokit feats compute-cmvn "$work/fbank" "$work/fbank/cmvn"

echo "== 4. a small BPE tokenizer trained on the transcripts"
audiokit tokenizer train --type bpe --vocab-size 40 "$work/data" "$work/bpe"
audiokit tokenizer encode --tokenizer "$work/bpe" --pieces "THE QUICK BROWN FOX"

echo "== 5. scoring a hypothesis with two errors against the references"
python - "$work" <<'PY'
import sys
from pathlib import Path
work = Path(sys.argv[1])
lines = (work / "data" / "text").read_text().splitlines()
utt, words = lines[0].split(maxsplit=1)
lines[0] = f"{utt} {words.replace('THE ', '', 1)} EXTRA"
(work / "hyp.txt").write_text("\n".join(lines) + "\n")
PY
audiokit score --ref "$work/data/text" --hyp "$work/hyp.txt" --out "$work/score"
