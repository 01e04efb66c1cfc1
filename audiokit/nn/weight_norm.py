"""Weight-normalised convolutions with the old-style parameter names `weight_g` / `weight_v`.

DAC and EnCodec checkpoints (and the released ones) were written by the old
``torch.nn.utils.weight_norm``: the state dict holds ``<conv>.weight_g`` and ``<conv>.weight_v``
(and ``<conv>.bias``), never ``<conv>.weight``. These modules keep exactly those names, so
imported state dicts load without renaming, and compute ``w = g * v / ||v||`` with the norm over
every dim except 0 and no epsilon (``torch._weight_norm(v, g, 0)``), as the reference does.

For ``Conv1d`` (weight ``(out, in, k)``) ``g`` is ``(out, 1, 1)``; for ``ConvTranspose1d`` (weight
``(in, out, k)``) ``g`` is ``(in, 1, 1)``: normalised per *input* channel, as torch's dim=0 gives.

Inference speed (no autograd): the effective weight is computed once and cached
(:func:`frozen_weight`), and on CPU the shapes that oneDNN handles poorly (few channels, long
signals; transposed convs) run as a handful of matmuls (:func:`conv1d_fast`,
:func:`conv_transpose1d_fast`). Results equal the plain convolution within float32 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _init_gv(weight: torch.Tensor) -> tuple[nn.Parameter, nn.Parameter]:
    norm = torch.linalg.vector_norm(weight.detach().flatten(1), dim=1)
    g = norm.view(-1, *([1] * (weight.dim() - 1)))
    return nn.Parameter(g.clone()), nn.Parameter(weight.detach().clone())


def _needs_grad(module: nn.Module) -> bool:
    """The weight must be recomputed: autograd is on and g or v is trained."""
    return torch.is_grad_enabled() and (
        module.weight_g.requires_grad or module.weight_v.requires_grad
    )


def _records_graph(module: nn.Module, x: torch.Tensor) -> bool:
    """Autograd would record this call: then only the plain torch conv runs (the fast paths
    are inference kernels, e.g. a frozen codec inside a trained model still gets the conv)."""
    bias = module.bias is not None and module.bias.requires_grad
    return _needs_grad(module) or (torch.is_grad_enabled() and (x.requires_grad or bias))


def frozen_weight(conv: WNConv1d | WNConvTranspose1d) -> torch.Tensor:
    """The weight-normed weight for calls without autograd; in eval mode it is computed once and
    reused while ``weight_g``/``weight_v`` keep their version counters and storage.

    Only eval mode caches: a fused optimiser (or a write through ``.data``) changes parameters
    without bumping their version, so ``train()``/``eval()`` drop the cache and training mode
    always recomputes. The weight is made outside inference mode, so a cache built under
    ``torch.inference_mode()`` still serves a later call that autograd records.
    Recomputing g * v / ||v|| on every call costs as much as a small conv."""
    g, v = conv.weight_g, conv.weight_v
    if conv.training:
        with torch.no_grad():
            return torch._weight_norm(v, g, 0)
    key = (g._version, v._version, g.data_ptr(), v.data_ptr(), g.dtype, g.device)
    cached = conv.__dict__.get("_frozen")
    if cached is None or cached[0] != key:
        with torch.inference_mode(False), torch.no_grad():
            cached = (key, torch._weight_norm(v, g, 0))
        conv.__dict__["_frozen"] = cached
    return cached[1]


class _DropsCacheOnModeChange:
    """``train()``/``eval()`` drop the cached weight (see :func:`frozen_weight`)."""

    def train(self, mode: bool = True):  # type: ignore[override]
        self.__dict__.pop("_frozen", None)
        return super().train(mode)


class WNConv1d(_DropsCacheOnModeChange, nn.Conv1d):
    """``nn.Conv1d`` whose weight is ``weight_g * weight_v / ||weight_v||`` (shapes as torch's)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.weight_g, self.weight_v = _init_gv(self.weight)
        del self.weight  # the effective weight is derived, never stored

    @property
    def effective_weight(self) -> torch.Tensor:
        """g * v / ||v||, recomputed (differentiable)."""
        return torch._weight_norm(self.weight_v, self.weight_g, 0)

    def current_weight(self) -> torch.Tensor:
        """The effective weight: cached without autograd, recomputed with it."""
        return self.effective_weight if _needs_grad(self) else frozen_weight(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, T) -> (B, C_out, T')."""
        if _records_graph(self, x) or self.padding_mode != "zeros" or isinstance(self.padding, str):
            return self._conv_forward(x, self.current_weight(), self.bias)
        return conv1d_fast(
            x, frozen_weight(self), self.bias, self.stride[0], self.padding[0],
            self.dilation[0], self.groups,
        )  # fmt: skip


class WNConvTranspose1d(_DropsCacheOnModeChange, nn.ConvTranspose1d):
    """``nn.ConvTranspose1d`` with old-style weight norm (g per input channel, dim 0)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.weight_g, self.weight_v = _init_gv(self.weight)
        del self.weight

    @property
    def effective_weight(self) -> torch.Tensor:
        """g * v / ||v||, recomputed (differentiable)."""
        return torch._weight_norm(self.weight_v, self.weight_g, 0)

    def current_weight(self) -> torch.Tensor:
        """The effective weight: cached without autograd, recomputed with it."""
        return self.effective_weight if _needs_grad(self) else frozen_weight(self)

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        """x (B, C_in, T) -> (B, C_out, T')."""
        if output_size is not None:
            raise NotImplementedError("output_size is not supported; pad/trim the output instead")
        args = (self.stride[0], self.padding[0], self.output_padding[0], self.groups)
        if not _records_graph(self, x):
            return conv_transpose1d_fast(x, frozen_weight(self), self.bias, *args, self.dilation[0])
        return F.conv_transpose1d(x, self.current_weight(), self.bias, *args, self.dilation)


# ---- CPU inference kernels ------------------------------------------------------------------
# oneDNN is slow for convolutions with a few channels over long signals (the first and last
# stages of a waveform codec) and torch's transposed conv is a slow col2im; both are a few
# plain matmuls here. Batch items run one at a time so every item gets the same arithmetic
# whatever the batch (batched and single encodes give identical codes).

# measured at 1 thread (AVX2): beyond these input channel counts oneDNN's direct conv wins;
# its dilated kernel is slower, so the taps pay up to more channels there
_TAPS_MAX_CIN = 8
_TAPS_MAX_CIN_DILATED = 32
_TAPS_MIN_T = 2048


def _per_item(fn, x: torch.Tensor) -> torch.Tensor:
    if x.shape[0] == 1:
        return fn(x[0])[None]
    return torch.stack([fn(item) for item in x])


def conv1d_fast(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv1d`` (zero padding) for inference; x (B, C_in, T), w (C_out, C_in, K).

    Few input channels, stride 1, long T: one matmul per tap, ``out[:, t] += W_k x[:, t + s_k]``
    accumulated on the overlapping slices (no padded copy of x). Otherwise ``F.conv1d``.
    """
    cout, cin, k = w.shape
    t = x.shape[-1]
    if x.device.type != "cpu" or x.dim() != 3 or groups != 1 or stride != 1:
        return F.conv1d(x, w, b, stride, padding, dilation, groups)
    if k == 1 and padding == 0:  # pointwise: one matmul, without the conv dispatch
        w2 = w[:, :, 0]
        return _per_item(
            lambda x2: torch.mm(w2, x2) if b is None else torch.addmm(b[:, None], w2, x2), x
        )
    if (
        k == 1
        or not 2 <= cin <= (_TAPS_MAX_CIN if dilation == 1 else _TAPS_MAX_CIN_DILATED)
        or t < _TAPS_MIN_T
    ):
        return F.conv1d(x, w, b, stride, padding, dilation, groups)
    t_out = t + 2 * padding - dilation * (k - 1)
    shifts = [i * dilation - padding for i in range(k)]
    centre = shifts.index(0) if 0 in shifts and t_out == t else None

    def one(x2: torch.Tensor) -> torch.Tensor:  # (C_in, T) -> (C_out, T_out)
        if centre is not None:  # the unshifted tap covers the whole output: start from it
            w0 = w[:, :, centre]
            out = torch.mm(w0, x2) if b is None else torch.addmm(b[:, None], w0, x2)
        else:
            out = x2.new_zeros(cout, t_out) if b is None else b[:, None].repeat(1, t_out)
        for i, s in enumerate(shifts):
            lo, hi = max(0, -s), min(t_out, t - s)
            if i != centre and hi > lo:
                out[:, lo:hi].addmm_(w[:, :, i], x2[:, lo + s : hi + s])
        return out

    return _per_item(one, x)


def conv_transpose1d_fast(
    x: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor | None,
    stride: int = 1,
    padding: int = 0,
    output_padding: int = 0,
    groups: int = 1,
    dilation: int = 1,
) -> torch.Tensor:
    """``F.conv_transpose1d`` for inference; x (B, C_in, T), w (C_in, C_out, K).

    With K = m * stride: one matmul gives every input frame's K output samples per channel;
    the m stride-long pieces of consecutive frames overlap-add with m shifted slice adds.
    Otherwise ``F.conv_transpose1d``.
    """
    cin, cout, k = w.shape
    if (
        x.device.type != "cpu"
        or x.dim() != 3
        or groups != 1
        or dilation != 1
        or k % stride
        or output_padding > padding
        or x.shape[-1] * stride < _TAPS_MIN_T
    ):
        return F.conv_transpose1d(x, w, b, stride, padding, output_padding, groups, dilation)
    m, t = k // stride, x.shape[-1]
    wt = w.reshape(cin, cout * k).t()  # (C_out * m * s, C_in)
    full = (t + m - 1) * stride

    def one(x2: torch.Tensor) -> torch.Tensor:  # (C_in, T) -> (C_out, L)
        p = torch.mm(wt, x2).view(cout, m, stride, t)
        blocks = x2.new_empty(cout, stride, t + m - 1)  # (C_out, s, frame)
        if b is None:
            blocks.zero_()
        else:
            blocks.copy_(b[:, None, None].expand_as(blocks))
        for i in range(m):  # m = 2 for the usual kernel = 2 * stride
            blocks[:, :, i : i + t] += p[:, i]
        out = blocks.transpose(1, 2).reshape(cout, full)
        return out[:, padding : full - padding + output_padding]

    return _per_item(one, x)
