#!/usr/bin/env bash
# LibriSpeech 460 h (train-clean-100 + train-clean-360, the LibriTTS-sized clean subset; same
# speakers and books as LibriTTS, which is LibriSpeech re-segmented at 24 kHz) -> one codec at
# 16 kHz, compared with Opus on test-clean. Pick the codec with --codec (conf/<codec>.yaml):
#   rvq_codec (DAC-style, 6 kbit/s at 12 codebooks), encodec (8 kbit/s at 16), qdac, codec_vae.
# Training wants a GPU (see README.md for the expected compute):
#   ./run.sh --codec rvq_codec --ngpu 1
#   ./run.sh --codec encodec --ngpu 4 --backend slurm --slurm-opts "--partition=gpu --time=7-00:00:00"
#   ./run.sh --local-data-opts "--data-root /corpora/LibriSpeech"   # an existing copy
set -euo pipefail
cd "$(dirname "$0")"
export AUDIOKIT_RUN_CMD="egs/librispeech/codec1/run.sh $*"

codec=rvq_codec
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --codec) codec="$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
[ -f "conf/${codec}.yaml" ] || { echo "error: conf/${codec}.yaml not found (--codec: rvq_codec, encodec, qdac, codec_vae)" >&2; exit 2; }
extra=()
case "${codec}" in
    qdac) extra=(--token-type bpe --nbpe 500 --eval-codebooks "4 8 12") ;;
    rvq_codec) extra=(--eval-codebooks "4 8 12") ;;
    encodec) extra=(--eval-codebooks "2 4 8 16") ;;
esac

../../../recipes/codec.sh \
    --train-set train_460 --valid-set dev_clean --test-sets "test_clean" \
    --nj 16 --ngpu 1 \
    --train-config "conf/${codec}.yaml" \
    "${extra[@]}" \
    "${args[@]}"
