"""Short controlled training runs: how fast a streaming encoder learns next to an offline one.

Trains one model for a few hundred steps on a recipe's data (CTC head, full attention context,
no SpecAugment, AdamW + warmup/cosine, 1 thread) and prints the last batch's CTC loss and the
dev token error rate (greedy CTC). Used for the mini_en ablations in docs/streaming.md
("What to expect when training one"); each run takes ~7 min on one CPU core.

    cd egs/mini_en/asr1      # after stages 1-5 with --token-type bpe --nbpe 256
    python ../../../scripts/streaming_ablation.py --model conformer_ctc
    python ../../../scripts/streaming_ablation.py --model streaming
    python ../../../scripts/streaming_ablation.py --model streaming --set conv_norm='"batch_norm"'
    python ../../../scripts/streaming_ablation.py --model streaming --nemo-init
    python ../../../scripts/streaming_ablation.py --model streaming --symmetric-convs

``--set KEY=JSON`` overrides a model argument; ``--nemo-init`` re-initialises the causal front end
the way NeMo does (uniform, +-1/sqrt(fan_in)) instead of audiokit's He init;
``--symmetric-convs`` pads the block convolutions symmetrically (a diagnostic: such a model can
no longer stream); ``--specaug`` applies the mini_en offline recipe's SpecAugment (2 x 10 bins,
2 x 20 frames); contexts: ``--set att_context_size='[[32,7],[32,0]]'``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from audiokit.asr.ctc_model import ConformerCTC, token_error_rate
from audiokit.asr.decode.ctc_greedy import ctc_greedy_search
from audiokit.asr.streaming import StreamingConformer
from audiokit.audio.io import load
from audiokit.features.frontend import build_fbank_frontend
from audiokit.features.specaugment import SpecAugment
from audiokit.nn import causal_conv
from audiokit.text.tokenizer import load_tokenizer
from audiokit.train.interface import Batch


def load_set(data_dir: Path, tokenizer, limit: int) -> tuple[list[torch.Tensor], list[list[int]]]:
    """fbank (T, 80) per utterance (no dither) and token ids, for the first ``limit`` of wav.scp."""
    frontend = build_fbank_frontend({"num_mel_bins": 80}, 16000)
    text = dict(line.strip().split(" ", 1) for line in open(data_dir / "text"))
    feats, ids = [], []
    for line in list(open(data_dir / "wav.scp"))[:limit]:
        key, path = line.split(maxsplit=1)
        wav, _ = load(path.strip(), 16000)
        f, n = frontend(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))
        feats.append(f[0, : int(n[0])].clone())
        ids.append(tokenizer.encode(text[key]))
    return feats, ids


def make_batch(idx, feats, ids, augment: nn.Module | None = None) -> Batch:
    lengths = torch.tensor([feats[i].shape[0] for i in idx])
    x = torch.zeros(len(idx), int(lengths.max()), feats[0].shape[1])
    for j, i in enumerate(idx):
        x[j, : lengths[j]] = feats[i]
    if augment is not None:
        x = augment(x, lengths)
    tl = torch.tensor([len(ids[i]) for i in idx])
    y = torch.full((len(idx), int(tl.max())), -1, dtype=torch.long)
    for j, i in enumerate(idx):
        y[j, : tl[j]] = torch.tensor(ids[i])
    return Batch(x, lengths, y, tl, [str(i) for i in idx])


def nemo_front_end_init(sub: nn.Module) -> None:
    """PyTorch's default (= NeMo's) uniform init of the causal subsampling."""
    for m in sub.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.reset_parameters()


def symmetric_block_convs() -> None:
    """Diagnostic: the blocks' depthwise convs see (k-1)/2 frames on each side (offline only)."""

    def forward(self, x, cache=None, lengths=None):
        k = self.kernel_size[0] - 1
        return nn.Conv1d.forward(self, F.pad(x, (k // 2, k - k // 2))), None

    causal_conv.CausalConv1d.forward = forward  # type: ignore[method-assign]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", choices=["conformer_ctc", "streaming"], required=True)
    ap.add_argument("--train", default="dump/raw/train_filtered")
    ap.add_argument("--dev", default="dump/raw/dev_filtered")
    ap.add_argument("--tokenizer", default="data/token_list/bpe256")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON")
    ap.add_argument("--nemo-init", action="store_true")
    ap.add_argument("--symmetric-convs", action="store_true")
    ap.add_argument("--specaug", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    tok = load_tokenizer(args.tokenizer)
    feats, ids = load_set(Path(args.train), tok, 10**9)
    dev_feats, dev_ids = load_set(Path(args.dev), tok, 10**9)
    stacked = torch.cat(feats)
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    vocab, d = tok.vocab_size, 128
    common = dict(d_model=d, num_heads=4, ff_dim=4 * d, num_layers=5, conv_kernel=9)
    if args.model == "conformer_ctc":
        model = ConformerCTC(80, vocab, subsampling="conv2d8", **{**common, **overrides})
    else:
        stream = dict(heads="ctc", subsampling_channels=128, att_context_size=[[-1, -1]])
        model = StreamingConformer(80, vocab, **{**common, **stream, **overrides})
        if args.nemo_init:
            nemo_front_end_init(model.encoder.subsampling)
        if args.symmetric_convs:
            symmetric_block_convs()
    model.set_cmvn(stacked.mean(0), 1 / stacked.std(0))
    augment = None
    if args.specaug:  # on the raw fbank, before CMVN, as the recipe's data pipeline does
        augment = SpecAugment(0, "bicubic", 2, 10, 2, 20).train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-3)
    steps, warm = args.steps, args.warmup
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    )

    def dev_ter() -> float:
        model.eval()
        errors = tokens = 0.0
        with torch.no_grad():
            for s in range(0, len(dev_feats), 50):
                b = make_batch(range(s, min(s + 50, len(dev_feats))), dev_feats, dev_ids)
                if args.model == "conformer_ctc":
                    logp, out_len = model(b.feats, b.feat_lengths)
                    hyps = ctc_greedy_search(logp, out_len, blank=0)
                else:
                    hyps = [h.token_ids for h in model.recognize(b.feats, b.feat_lengths, "ctc")]
                n = int(b.target_lengths.sum())
                errors += float(token_error_rate(hyps, b.targets, b.target_lengths)) * n
                tokens += n
        model.train()
        return errors / tokens

    order, step, t0 = list(range(len(feats))), 0, time.time()
    while step < steps:
        random.shuffle(order)
        for i in range(0, len(order), args.batch_size):
            if step >= steps:
                break
            batch = make_batch(order[i : i + args.batch_size], feats, ids, augment)
            loss = model.training_losses(batch)
            opt.zero_grad()
            loss["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            step += 1
            if step % 25 == 0:
                print(
                    f"step {step} loss {float(loss['loss'].detach()):.2f} {time.time() - t0:.0f}s",
                    flush=True,
                )
    print(
        f"FINAL {args.model} {' '.join(args.set)} nemo_init={args.nemo_init} "
        f"symmetric={args.symmetric_convs} specaug={args.specaug}: last-batch CTC loss {float(loss['loss'].detach()):.2f}, "
        f"dev TER {dev_ter():.3f}"
    )


if __name__ == "__main__":
    main()
