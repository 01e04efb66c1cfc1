"""Weight-normalised convolutions with the old-style parameter names `weight_g` / `weight_v`.

DAC and EnCodec checkpoints (and the released ones) were written by the old
``torch.nn.utils.weight_norm``: the state dict holds ``<conv>.weight_g`` and ``<conv>.weight_v``
(and ``<conv>.bias``), never ``<conv>.weight``. These modules keep exactly those names, so
imported state dicts load without renaming, and compute ``w = g * v / ||v||`` with the norm over
every dim except 0 and no epsilon (``torch._weight_norm(v, g, 0)``), as the reference does.

For ``Conv1d`` (weight ``(out, in, k)``) ``g`` is ``(out, 1, 1)``; for ``ConvTranspose1d`` (weight
``(in, out, k)``) ``g`` is ``(in, 1, 1)``: normalised per *input* channel, as torch's dim=0 gives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _init_gv(weight: torch.Tensor) -> tuple[nn.Parameter, nn.Parameter]:
    norm = torch.linalg.vector_norm(weight.detach().flatten(1), dim=1)
    g = norm.view(-1, *([1] * (weight.dim() - 1)))
    return nn.Parameter(g.clone()), nn.Parameter(weight.detach().clone())


class WNConv1d(nn.Conv1d):
    """``nn.Conv1d`` whose weight is ``weight_g * weight_v / ||weight_v||`` (shapes as torch's)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.weight_g, self.weight_v = _init_gv(self.weight)
        del self.weight  # the effective weight is derived, never stored

    @property
    def effective_weight(self) -> torch.Tensor:
        return torch._weight_norm(self.weight_v, self.weight_g, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, T) -> (B, C_out, T')."""
        return self._conv_forward(x, self.effective_weight, self.bias)


class WNConvTranspose1d(nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` with old-style weight norm (g per input channel, dim 0)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.weight_g, self.weight_v = _init_gv(self.weight)
        del self.weight

    @property
    def effective_weight(self) -> torch.Tensor:
        return torch._weight_norm(self.weight_v, self.weight_g, 0)

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        """x (B, C_in, T) -> (B, C_out, T')."""
        if output_size is not None:
            raise NotImplementedError("output_size is not supported; pad/trim the output instead")
        return F.conv_transpose1d(
            x,
            self.effective_weight,
            self.bias,
            self.stride,
            self.padding,
            self.output_padding,
            self.groups,
            self.dilation,
        )
