"""Conv2d front-end subsampling (WeNet/ESPnet ``Conv2dSubsampling4/6/8``).

Each variant stacks un-padded 2-D convolutions over (time, feature) with ReLU, then projects
the flattened channels x remaining feature bins to ``d_model``. Per-utterance output lengths
follow the convolution arithmetic exactly (as WeNet's mask slicing gives):

- ``conv2d4``: two (3, stride 2) convs        ``T' = ((T - 1) // 2 - 1) // 2``
- ``conv2d6``: (3, stride 2) then (5, stride 3) ``T' = ((T - 1) // 2 - 2) // 3``
- ``conv2d8``: three (3, stride 2) convs      ``T' = (((T - 1) // 2 - 1) // 2 - 1) // 2``

An output frame only sees input frames before the utterance's end, so zero padding never
leaks into valid outputs. The shortest accepted input (one output frame) is 7, 11, 15 frames.

``dw_conv2d4`` / ``dw_conv2d8`` have the same geometry (and lengths) as ``conv2d4`` /
``conv2d8``, but every conv after the first is depthwise-separable (a depthwise conv with the
same kernel and stride, then a 1x1 pointwise conv), as in NeMo's ``dw_striding``. With C
channels that is C*(k*k + C) instead of C*C*k*k multiply-adds per position: about 8x cheaper
for k=3, which makes the front end no longer the dominant cost of a small model on CPU.
"""

from __future__ import annotations

import torch
from torch import nn

from audiokit.errors import ConfigError, FeatureError

# (kernel, stride) of each conv layer per variant.
LAYOUTS: dict[str, list[tuple[int, int]]] = {
    "conv2d4": [(3, 2), (3, 2)],
    "conv2d6": [(3, 2), (5, 3)],
    "conv2d8": [(3, 2), (3, 2), (3, 2)],
}


# Depthwise-separable variants and the plain layout whose geometry they share.
DEPTHWISE = {"dw_conv2d4": "conv2d4", "dw_conv2d8": "conv2d8"}


def _layout(name: str) -> list[tuple[int, int]]:
    plain = DEPTHWISE.get(name, name)
    if plain not in LAYOUTS:
        names = ", ".join([*LAYOUTS, *DEPTHWISE])
        raise ConfigError(f"unknown subsampling '{name}'; use one of: {names}")
    return LAYOUTS[plain]


def subsampled_length(lengths: torch.Tensor | int, name: str) -> torch.Tensor | int:
    """Output frames for ``lengths`` input frames (tensor or int; may be <= 0 when too short)."""
    out = lengths
    for kernel, stride in _layout(name):
        out = (out - kernel) // stride + 1
    return out


def subsampling_factor(name: str) -> int:
    """Time reduction of the variant: 4, 6 or 8."""
    factor = 1
    for _, stride in _layout(name):
        factor *= stride
    return factor


def min_input_frames(name: str) -> int:
    """Shortest input (frames) that yields one output frame: 7, 11 or 15."""
    frames = 1
    for kernel, stride in reversed(_layout(name)):
        frames = (frames - 1) * stride + kernel
    return frames


class Conv2dSubsampling(nn.Module):
    """``(B, T, input_dim)`` features -> ``(B, T', d_model)`` with ``T'`` as in the module doc.

    No positional scaling or encoding here: the encoder applies those afterwards.
    """

    def __init__(self, input_dim: int, d_model: int, name: str = "conv2d4") -> None:
        super().__init__()
        layout = _layout(name)
        self.name = name
        self.factor = subsampling_factor(name)
        self.min_input_frames = min_input_frames(name)
        freq = subsampled_length(input_dim, name)
        if freq < 1:
            raise ConfigError(
                f"subsampling '{name}' needs input_dim >= {min_input_frames(name)} "
                f"feature bins, got {input_dim}; use more mel bins or another subsampling"
            )
        layers: list[nn.Module] = []
        in_ch = 1
        for kernel, stride in layout:
            if name in DEPTHWISE and in_ch == d_model:
                layers += [
                    nn.Conv2d(d_model, d_model, kernel, stride, groups=d_model),
                    nn.Conv2d(d_model, d_model, 1),
                    nn.ReLU(),
                ]
            else:
                layers += [nn.Conv2d(in_ch, d_model, kernel, stride), nn.ReLU()]
            in_ch = d_model
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(d_model * freq, d_model)

    def check_lengths(self, lengths: torch.Tensor, utt_ids: list[str] | None = None) -> None:
        """Raise :class:`FeatureError` naming the first utterance shorter than the minimum."""
        short = lengths < self.min_input_frames
        if bool(short.any()):
            i = int(short.nonzero()[0, 0])
            who = f"utterance '{utt_ids[i]}'" if utt_ids else f"utterance {i} of the batch"
            raise FeatureError(
                f"{who} has {int(lengths[i])} feature frames but '{self.name}' subsampling needs "
                f"at least {self.min_input_frames}; drop shorter utterances "
                "(filter on the model's min_input_frames)"
            )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x (B, T, D)``, ``lengths (B,)`` -> ``(B, T', d_model)``, ``out_lengths (B,)``."""
        self.check_lengths(lengths)
        x = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        return x, subsampled_length(lengths, self.name)
