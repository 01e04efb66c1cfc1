"""EnCodec (Défossez et al. 2022): SEANet encoder/decoder around an EMA residual VQ.

Behaviour matches facebookresearch/encodec 0.1.1 (``EncodecModel``) so its checkpoints import
with identical codes (see :mod:`audiokit.importers.encodec`):

* bandwidth -> codebooks: ``n = max(1, floor(kbps * 1000 / (log2(bins) * ceil(sr / hop))))``;
* ``audio_normalize``: each segment is divided by ``1e-8 + rms(mean over channels)`` before the
  encoder and the decoder output multiplied back (the scales travel in ``CodecEncoding.scales``);
* ``segment`` (seconds): the input is cut into windows of ``int(segment * sr)`` samples every
  ``max(1, int((1 - overlap) * length))`` samples, each coded independently; codes of the
  segments are concatenated along T (``extra["segment_frames"]`` keeps each one's frame count)
  and decoding joins the segments with EnCodec's linear (triangular-weight) overlap-add.

Equal-length segments go through the encoder/decoder as one batch; only a shorter last segment
takes a second call.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from audiokit.codec.base import CodecEncoding, CodecOutput
from audiokit.codec.ema_quantizer import EMAResidualVQ
from audiokit.codec.gan import CodecTrainingMixin
from audiokit.codec.seanet import SEANetDecoder, SEANetEncoder
from audiokit.errors import AudioError, ConfigError
from audiokit.registry import register_model

_DECODER_ONLY = ("trim_right_ratio", "final_activation")
_SEANET_DEFAULTS = {
    "dimension": 128,
    "n_filters": 32,
    "n_residual_layers": 1,
    "ratios": [8, 5, 4, 2],
    "lstm": 2,
}


@register_model("encodec")
class EncodecCodec(CodecTrainingMixin, nn.Module):
    """EnCodec: wav (B, C, S) <-> codes (B, K, T); kind "rvq".

    Args mirror EnCodec's ``_get_model`` (config.json of the fixtures): ``seanet`` holds the
    SEANet arguments (dimension, n_filters, n_residual_layers, ratios, lstm, kernel sizes, ...),
    ``n_q``/``bins`` the quantiser, ``target_bandwidths`` the advertised kbps. ``discriminator``
    and ``loss`` configure GAN training (:mod:`audiokit.codec.gan`).
    """

    kind = "rvq"
    # EnCodec weighs its commitment penalty 1 (DAC's 0.25 is the mixin's default)
    default_loss_weights = {"commitment": 1.0}

    def __init__(
        self,
        sample_rate: int = 24000,
        channels: int = 1,
        causal: bool = True,
        norm: str = "weight_norm",
        audio_normalize: bool = False,
        segment: float | None = None,
        overlap: float = 0.01,
        seanet: dict | None = None,
        n_q: int = 32,
        bins: int = 1024,
        target_bandwidths: list[float] | None = None,
        decay: float = 0.99,
        kmeans_init: bool = True,
        kmeans_iters: int = 50,
        dead_code_threshold: float = 2,
        quantizer_dropout: float = 0.0,
        discriminator: dict | None = None,
        loss: dict | None = None,
    ) -> None:
        super().__init__()
        if bins <= 1 or 2 ** int(math.log2(bins)) != bins:
            raise ConfigError(f"encodec bins={bins}: must be a power of 2")
        if not 1 <= channels <= 2:
            raise ConfigError(f"encodec channels={channels}: EnCodec supports 1 or 2")
        sea = {**_SEANET_DEFAULTS, **(seanet or {})}
        enc_args = {k: v for k, v in sea.items() if k not in _DECODER_ONLY}
        try:
            self.encoder = SEANetEncoder(channels=channels, norm=norm, causal=causal, **enc_args)
            self.decoder = SEANetDecoder(channels=channels, norm=norm, causal=causal, **sea)
        except TypeError as e:
            raise ConfigError(f"encodec seanet: {e}; fix the seanet arguments") from None
        self.quantizer = EMAResidualVQ(
            sea["dimension"],
            n_q,
            bins,
            decay,
            kmeans_init,
            kmeans_iters,
            dead_code_threshold,
            quantizer_dropout,
        )
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.hop_length = int(self.encoder.hop_length)
        self.audio_normalize = bool(audio_normalize)
        self.segment = segment
        self.overlap = float(overlap)
        if not 0.0 <= self.overlap < 1.0:  # >= 1: one segment per sample; < 0: gaps (NaN audio)
            raise ConfigError(f"overlap {overlap} must be in [0, 1)")
        self.n_codebooks = int(n_q)
        self.codebook_size = int(bins)
        self.target_bandwidths = list(target_bandwidths or [])
        self.init_training(discriminator, loss)

    # ---- geometry ----------------------------------------------------------------------------

    @property
    def segment_length(self) -> int | None:
        return None if self.segment is None else int(self.segment * self.sample_rate)

    @property
    def segment_stride(self) -> int | None:
        length = self.segment_length
        return None if length is None else max(1, int((1 - self.overlap) * length))

    def n_codebooks_for_bandwidth(self, kbps: float) -> int:
        """EnCodec's rule: floor(kbps / kbps_per_codebook), at least 1, at most n_q."""
        bw_per_q = math.log2(self.codebook_size) * math.ceil(self.sample_rate / self.hop_length)
        return min(self.n_codebooks, int(max(1, math.floor(kbps * 1000 / bw_per_q))))

    def _segments(self, length: int) -> list[tuple[int, int, int]]:
        """Groups of equal-length segments: [(first offset, segment length, count)]."""
        seg, stride = self.segment_length, self.segment_stride
        if seg is None:
            return [(0, length, 1)]
        groups: list[tuple[int, int, int]] = []
        for o in range(0, length, stride):
            n = min(seg, length - o)
            if groups and groups[-1][1] == n:
                groups[-1] = (groups[-1][0], n, groups[-1][2] + 1)
            else:
                groups.append((o, n, 1))
        return groups

    # ---- coding ------------------------------------------------------------------------------

    def _check(self, wav: torch.Tensor) -> None:
        if wav.dim() != 3 or wav.shape[1] != self.channels:
            raise AudioError(
                f"encodec: input of shape {tuple(wav.shape)} should be (batch, {self.channels}, "
                "samples); convert the audio to the model's channel count"
            )

    @staticmethod
    def _scale(x: torch.Tensor) -> torch.Tensor:
        """x (N, C, L) -> (N, 1, 1) = 1e-8 + rms of the channel mean (EnCodec's normalisation)."""
        return 1e-8 + x.mean(dim=1, keepdim=True).pow(2).mean(dim=2, keepdim=True).sqrt()

    def encode(self, wav: torch.Tensor, n_codebooks: int | None = None) -> CodecEncoding:
        """wav (B, C, S) -> codes (B, K, total frames); scales (B, n_seg) if normalising."""
        self._check(wav)
        b, c, s = wav.shape
        codes, scales, frames = [], [], []
        for offset, length, count in self._segments(s):
            stride = self.segment_stride or length
            x = wav[..., offset : offset + stride * (count - 1) + length]
            x = x.unfold(-1, length, stride).transpose(1, 2).reshape(b * count, c, length)
            if self.audio_normalize:
                scale = self._scale(x)
                x = x / scale
                scales.append(scale.view(b, count))
            q = self.quantizer.encode(self.encoder(x), n_codebooks)  # (B*count, K, F)
            k, f = q.shape[1:]
            codes.append(q.view(b, count, k, f).permute(0, 2, 1, 3).reshape(b, k, count * f))
            frames += [f] * count
        extra = {"segment_frames": frames} if self.segment is not None else {}
        return CodecEncoding(
            codes=torch.cat(codes, dim=2),
            scales=torch.cat(scales, dim=1) if scales else None,
            num_samples=s,
            extra=extra,
        )

    def decode(self, encoding: CodecEncoding) -> torch.Tensor:
        """codes (B, K, T) -> wav (B, C, S): per-segment decode + overlap-add, trimmed to S."""
        codes = encoding.codes
        if codes is None:
            raise ConfigError("encodec decode: the encoding has no codes; encode with an RVQ codec")
        if codes.shape[1] > self.n_codebooks:
            raise ConfigError(
                f"encodec decode: {codes.shape[1]} codebooks but the model has {self.n_codebooks}; "
                "decode with the model that encoded them"
            )
        b = codes.shape[0]
        frames = list(encoding.extra.get("segment_frames") or [codes.shape[2]])
        if sum(frames) != codes.shape[2]:
            raise ConfigError(
                f"encodec decode: segment_frames sum to {sum(frames)} but codes have "
                f"{codes.shape[2]} frames; the encoding is inconsistent"
            )
        scales = encoding.scales
        groups: list[torch.Tensor] = []  # (B, count, C, L) per run of equal-length segments
        start = seg = 0
        while seg < len(frames):
            f = frames[seg]
            count = 1
            while seg + count < len(frames) and frames[seg + count] == f:
                count += 1
            q = codes[:, :, start : start + count * f].reshape(b, -1, count, f)
            q = q.permute(0, 2, 1, 3).reshape(b * count, -1, f)
            y = self.decoder(self.quantizer.decode(q))
            y = y.view(b, count, *y.shape[1:])
            if scales is not None:
                y = y * scales[:, seg : seg + count, None, None].to(y.dtype)
            groups.append(y)
            start += count * f
            seg += count
        if self.segment is None and len(frames) == 1:
            out = groups[0][:, 0]
        else:
            out = _linear_overlap_add(groups, self.segment_stride or 1)
        if encoding.num_samples is not None:
            out = out[..., : encoding.num_samples]
        return out

    def forward(self, wav: torch.Tensor, n_codebooks: int | None = None) -> torch.Tensor:
        """Resynthesis wav (B, C, S) -> (B, C, S) (EnCodec's ``model(x)``)."""
        return self.decode(self.encode(wav, n_codebooks))

    def forward_train(self, wav: torch.Tensor) -> CodecOutput:
        """Generator forward on training crops wav (B, C, S) (no segmentation; per-item scale)."""
        self._check(wav)
        scale = self._scale(wav) if self.audio_normalize else None
        x = wav / scale if scale is not None else wav
        z_q, codes, losses = self.quantizer(self.encoder(x))
        audio = self.decoder(z_q)[..., : wav.shape[-1]]
        if scale is not None:
            audio = audio * scale
        return CodecOutput(audio=audio, latent=z_q, codes=codes, losses=losses)


def _linear_overlap_add(groups: list[torch.Tensor], stride: int) -> torch.Tensor:
    """EnCodec's ``_linear_overlap_add`` on segment runs (B, n_g, C, L_g) placed every `stride`.

    Weights ``w = 0.5 - |t - 0.5|`` with ``t = linspace(0, 1, L0 + 2)[1:-1]`` for the first
    segment's length L0; a segment of length L uses ``w[:L]``; out = sum(w * seg) / sum(w).
    Each run is placed with one ``index_add_`` over flat output positions (in segment order,
    so overlaps sum in EnCodec's order), not a loop over segments (``F.fold``'s col2im is
    several times slower on CPU for these long kernels).
    """
    first = groups[0]
    b, _, c, l0 = first.shape
    t = torch.linspace(0, 1, l0 + 2, device=first.device, dtype=first.dtype)[1:-1]
    weight = 0.5 - (t - 0.5).abs()
    n_total = sum(g.shape[1] for g in groups)
    total = stride * (n_total - 1) + groups[-1].shape[-1]
    rows = b * c
    out = first.new_zeros(rows * total)
    wsum = first.new_zeros(total)
    row_start = torch.arange(rows, device=first.device)[:, None] * total
    offset = 0
    for g in groups:  # at most two runs: the full segments and a shorter last one
        n, length = g.shape[1], g.shape[-1]
        w = weight[:length]
        starts = offset + stride * torch.arange(n, device=g.device)
        pos = (starts[:, None] + torch.arange(length, device=g.device)).reshape(-1)  # (n*L,)
        wsum.index_add_(0, pos, w.expand(n, length).reshape(-1))
        src = (g * w).permute(0, 2, 1, 3).reshape(rows, n * length)  # (B*C, n*L)
        out.index_add_(0, (row_start + pos).reshape(-1), src.reshape(-1))
        offset += stride * n
    return (out.view(rows, total) / wsum).view(b, c, total)
