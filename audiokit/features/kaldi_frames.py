"""Batched Kaldi framing: frame counts, edge reflection, dither, DC removal, preemphasis, windows.

Follows Kaldi's feature-window.cc. A padded batch is framed through one overlapping strided view
(no copy); only frames that belong to an utterance are gathered and processed, in packed
``(C, L)`` blocks, so padding costs nothing.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from audiokit.errors import FeatureError
from audiokit.features.kaldi_options import FrameOptions, cached, options_key

FLT_EPSILON = 1.1920928955078125e-07  # std::numeric_limits<float>::epsilon()


def num_frames(num_samples: Tensor | int, opts: FrameOptions) -> Tensor | int:
    """Kaldi's NumFrames (offline, flush=True) for an int or an int tensor of sample counts.

    snip_edges=True: frames that fit completely, the first starting at sample 0.
    snip_edges=False: ``round(num_samples / shift)`` (half up), edges reflected.
    """
    shift, length = opts.window_shift, opts.window_size
    if isinstance(num_samples, Tensor):
        n = num_samples.to(torch.int64)
        if opts.snip_edges:
            return torch.where(
                n < length, 0, 1 + torch.div(n - length, shift, rounding_mode="floor")
            )
        return torch.div(n + shift // 2, shift, rounding_mode="floor")
    n = int(num_samples)
    if opts.snip_edges:
        return 0 if n < length else 1 + (n - length) // shift
    return (n + shift // 2) // shift


def min_samples(opts: FrameOptions) -> int:
    """Fewest samples that give one frame."""
    if opts.snip_edges:
        return opts.window_size
    return opts.window_shift - opts.window_shift // 2


def _window_values(opts: FrameOptions) -> Tensor:
    """Window function of length L in float64 (Kaldi computes it in double)."""
    n = opts.window_size
    a = 2.0 * math.pi / (n - 1)
    i = torch.arange(n, dtype=torch.float64)
    kind = opts.window_type
    if kind == "hanning":
        return 0.5 - 0.5 * torch.cos(a * i)
    if kind == "sine":
        return torch.sin(0.5 * a * i)
    if kind == "hamming":
        return 0.54 - 0.46 * torch.cos(a * i)
    if kind == "povey":
        return (0.5 - 0.5 * torch.cos(a * i)).pow(0.85)
    if kind == "rectangular":
        return torch.ones(n, dtype=torch.float64)
    if kind == "blackman":
        c = float(torch.tensor(opts.blackman_coeff, dtype=torch.float32))
        return c - 0.5 * torch.cos(a * i) + (0.5 - c) * torch.cos(2 * a * i)
    raise AssertionError(kind)  # validate() rejects other names


def feature_window(
    opts: FrameOptions, device: torch.device | str, dtype: torch.dtype, scale: float = 1.0
) -> Tensor:
    """(L,) window for `opts` times `scale`, cached per (options, device, dtype, scale)."""
    key = ("window", options_key(opts), torch.device(device), dtype, scale)

    def build() -> Tensor:
        # Kaldi stores the window as float; round through float32 before any float64 use.
        return _window_values(opts).to(torch.float32).to(device=device, dtype=dtype) * scale

    return cached(key, build)


def check_lengths(lengths: Tensor, opts: FrameOptions) -> Tensor:
    """Frame counts (B,) int64; FeatureError if any utterance is too short for one frame."""
    counts = num_frames(lengths, opts)
    assert isinstance(counts, Tensor)
    short = (counts <= 0).nonzero().flatten()
    if short.numel():
        i = int(short[0])
        need = min_samples(opts)
        raise FeatureError(
            f"utterance {i} of the batch has {int(lengths[i])} samples, shorter than one frame: "
            f"it needs at least {need} samples ({1000.0 * need / opts.sample_frequency:g} ms at "
            f"{opts.sample_frequency:g} Hz) with snip_edges={opts.snip_edges}; drop or pad it"
            + (", or use snip_edges=False" if opts.snip_edges else "")
        )
    return counts


def _reflect(index: Tensor, length: Tensor) -> Tensor:
    """Kaldi's edge reflection (-1 -> 0, n -> n-1), repeated as often as needed."""
    period = 2 * length
    m = torch.remainder(index, period)
    return torch.where(m >= length, period - 1 - m, m)


def frame_signal(
    waveforms: Tensor, lengths: Tensor, counts: Tensor, opts: FrameOptions
) -> tuple[Tensor, Tensor]:
    """Frame a padded batch as Kaldi's ExtractWindow would, as one strided view (no copy).

    Args:
        waveforms: (B, T) contiguous float; samples past lengths[b] are ignored.
        lengths: (B,) int64 samples per utterance.
        counts: (B,) int64 frames per utterance (from `check_lengths`).

    Returns:
        frames: (R, L) view in which row r is the L samples starting at flat sample r, so any
            frame is one row; rows of real frames come from `frame_index`.
        first: (B,) int64 row of each utterance's frame 0; frame f is row ``first[b] + f*shift``.
    """
    shift, length = opts.window_shift, opts.window_size
    batch, total = waveforms.shape
    if opts.snip_edges:
        # Valid frames lie inside their utterance: frame the signal where it is.
        source, start = waveforms.contiguous(), 0
    else:
        # Frame f starts at f*shift + shift//2 - L//2; build a buffer in which every sample a
        # frame touches is the reflected sample of its own utterance.
        offset = shift // 2 - length // 2
        left = max(0, -offset)
        start = offset + left
        span = start + (int(counts.max()) - 1) * shift + length
        pos = torch.arange(span, device=waveforms.device) - left
        source = torch.gather(waveforms, 1, _reflect(pos[None, :], lengths[:, None]))
    flat = source.reshape(-1)
    frames = flat.as_strided((flat.numel() - length + 1, length), (1, 1))
    first = torch.arange(batch, device=waveforms.device) * source.shape[1] + start
    return frames, first


def frame_index(counts: Tensor, first: Tensor, shift: int) -> tuple[Tensor, Tensor]:
    """Rows of `frame_signal`'s view for all N = counts.sum() real frames (utterance-major),
    and their positions ``b * F_max + f`` in a (B, F_max) output."""
    f_max = int(counts.max())
    valid = torch.arange(f_max, device=counts.device) < counts[:, None]  # (B, F_max)
    b_idx, f_idx = valid.nonzero(as_tuple=True)
    return first[b_idx] + f_idx * shift, b_idx * f_max + f_idx


class FrameProcessor:
    """Kaldi's ProcessWindow for blocks of frames, in Kaldi's order.

    dither -> remove DC -> raw log energy -> preemphasis (x[0] -= c*x[0]) -> window.
    Frames arrive in input units; ``opts.waveform_scale`` is applied on the way. A power-of-two
    scale (the default 2**15) commutes exactly with every step, so it is folded into the window
    (and the energy) instead of costing a pass of its own, with bit-identical results.
    The window and constants are prepared once per call, not per block.
    """

    def __init__(self, opts: FrameOptions, device: torch.device, dtype: torch.dtype) -> None:
        self.opts = opts
        scale = float(opts.waveform_scale)
        self.prescale = 1.0
        if math.frexp(scale)[0] != 0.5:  # not a power of two: scale the samples explicitly
            self.prescale, scale = scale, 1.0
        self.scale = scale
        # Kaldi holds the coefficient as float.
        self.coeff = float(torch.tensor(opts.preemphasis_coefficient, dtype=torch.float32))
        self.window = feature_window(opts, device, dtype, scale)

    def __call__(
        self,
        frames: Tensor,
        out: Tensor,
        generator: torch.Generator | None = None,
        want_raw_energy: bool = False,
    ) -> Tensor | None:
        """Process `frames` (C, L), overwritten as scratch, into `out` (C, n_fft).

        `out[:, L:]` must already hold zeros (the FFT padding). Returns the raw log energy (C,),
        log(max(sum x^2, FLT_EPSILON)) after DC removal and before preemphasis, if asked for.
        """
        x, opts = frames, self.opts
        if self.prescale != 1.0:
            x.mul_(self.prescale)
        if opts.dither != 0.0:
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x.add_(noise, alpha=opts.dither / self.scale)
        if opts.remove_dc_offset:
            x.sub_(x.mean(dim=1, keepdim=True))
        energy = log_energy(x, self.scale * self.scale) if want_raw_energy else None
        body = out[:, : x.shape[1]]
        if self.coeff != 0.0:
            torch.sub(x[:, 1:], x[:, :-1], alpha=self.coeff, out=body[:, 1:])
            torch.sub(x[:, :1], x[:, :1], alpha=self.coeff, out=body[:, :1])
            body.mul_(self.window)
        else:
            torch.mul(x, self.window, out=body)
        return energy


def log_energy(x: Tensor, scale_sq: float = 1.0) -> Tensor:
    """(N, L) -> (N,) log(max(scale_sq * sum x^2, FLT_EPSILON)), Kaldi's floored log energy."""
    energy = torch.linalg.vecdot(x, x, dim=1)
    if scale_sq != 1.0:
        energy.mul_(scale_sq)
    return energy.clamp_min_(FLT_EPSILON).log_()
