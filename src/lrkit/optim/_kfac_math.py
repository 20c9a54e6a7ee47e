"""The maths of K-FAC as plain functions: Kronecker factors, their eigenbases, the damped
natural-gradient product and the KL-clipping factor.

K-FAC (Martens & Grosse, 2015, "Optimizing Neural Networks with Kronecker-factored Approximate
Curvature"; Grosse & Martens, 2016, "A Kronecker-factored approximate Fisher matrix for
convolution layers") approximates the Fisher block of a layer with weights ``W`` (``out x in``)
by a Kronecker product ``A (x) G``: ``A = E[a a^T]`` over the layer's inputs `a` (a 1 appended when
the layer has a bias) and ``G = E[g g^T]`` over the per-example gradients `g` of the loss with
respect to the layer's outputs. The natural-gradient direction of the gradient matrix ``D`` is then

    V = (A (x) G + lambda I)^-1 vec(D) = Q_G [(Q_G^T D Q_A) / (d_G d_A^T + lambda)] Q_A^T

with the eigendecompositions ``A = Q_A diag(d_A) Q_A^T`` and ``G = Q_G diag(d_G) Q_G^T``: the
damping `lambda` is added to the eigenvalues of the Kronecker product, exactly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "conv2d_patches",
    "eigen",
    "embedding_factors",
    "kl_clip_factor",
    "linear_factors",
    "precondition_embedding",
    "precondition_matrix",
    "running_average",
]


def _rows(x: Tensor) -> Tensor:
    return x.reshape(-1, x.shape[-1])


def linear_factors(
    inputs: Tensor, output_grads: Tensor, *, bias: bool, batch_size: int
) -> tuple[Tensor, Tensor]:
    """The factors ``(A, G)`` of one minibatch for a layer whose rows are ``out = W a (+ b)``.

    ``A = a^T a / rows`` over the rows of `inputs` (``(..., in)``, a column of ones appended when
    `bias`), and ``G = batch_size * g^T g`` summed over the rows of `output_grads` (``(..., out)``),
    the gradient of a loss that is a mean over `batch_size` examples: with one row per example,
    ``B * g_i`` is example i's own output gradient, so G is the mean of their outer products. Rows
    beyond one per example (a sequence, the positions of a convolution) share the weights, and G
    then counts every position, as in Grosse & Martens (2016).

    >>> a = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> g = torch.tensor([[0.5], [-0.5]])  # gradients of a mean over 2 examples
    >>> A, G = linear_factors(a, g, bias=True, batch_size=2)
    >>> A.tolist(), G.tolist()
    ([[5.0, 7.0, 2.0], [7.0, 10.0, 3.0], [2.0, 3.0, 1.0]], [[1.0]])
    """
    a = _rows(inputs)
    if bias:
        a = torch.cat([a, a.new_ones(a.shape[0], 1)], dim=1)
    g = _rows(output_grads)
    return a.T @ a / a.shape[0], (g.T @ g) * batch_size


def conv2d_patches(inputs: Tensor, module: torch.nn.Conv2d) -> Tensor:
    """The input patches of a Conv2d, one row per (example, output position): ``(B*L, C*kh*kw)``."""
    if isinstance(module.padding, str):
        raise ValueError(f"conv2d_patches: string padding {module.padding!r} is not supported")
    patches = torch.nn.functional.unfold(
        inputs, module.kernel_size, dilation=module.dilation, padding=module.padding, stride=module.stride
    )
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def embedding_factors(
    indices: Tensor, output_grads: Tensor, *, num: int, batch_size: int
) -> tuple[Tensor, Tensor]:
    """The factors of an embedding: `A` is diagonal (the frequency of each index, as a vector of
    length `num`) because its inputs are one-hot; `G` as for `linear_factors`.

    >>> A, G = embedding_factors(torch.tensor([0, 2, 2, 2]), torch.ones(4, 1) / 4, num=3, batch_size=4)
    >>> A.tolist(), G.tolist()
    ([0.25, 0.0, 0.75], [[1.0]])
    """
    idx = indices.reshape(-1)
    g = _rows(output_grads)
    counts = torch.bincount(idx, minlength=num).to(g.dtype)
    return counts / idx.numel(), (g.T @ g) * batch_size


def running_average(old: Tensor | None, new: Tensor, decay: float) -> Tensor:
    """``decay * old + (1 - decay) * new``; the first estimate (`old` is None) is `new` itself."""
    if old is None:
        return new.clone()
    return old.mul(decay).add_(new, alpha=1.0 - decay)


def eigen(factor: Tensor) -> tuple[Tensor, Tensor]:
    """``(Q, d)`` with ``factor = Q diag(d) Q^T`` for a symmetric PSD factor; eigenvalues below zero
    (round-off) are set to 0. A vector (a diagonal factor) gives an empty Q and the vector itself.
    """
    if factor.ndim == 1:
        return factor.new_empty(0), factor.clamp_min(0.0)
    d, q = torch.linalg.eigh(factor)
    return q, d.clamp_min(0.0)


def precondition_matrix(
    grad: Tensor, qa: Tensor, da: Tensor, qg: Tensor, dg: Tensor, damping: float
) -> Tensor:
    """``(A (x) G + damping I)^-1`` applied to the gradient matrix `grad` (``out x in``).

    >>> A, G = torch.diag(torch.tensor([2.0, 4.0])), torch.diag(torch.tensor([1.0]))
    >>> (qa, da), (qg, dg) = eigen(A), eigen(G)
    >>> precondition_matrix(torch.tensor([[2.0, 4.0]]), qa, da, qg, dg, 0.0).tolist()
    [[1.0, 1.0]]
    """
    inner = qg.T @ grad @ qa
    return qg @ (inner / (dg[:, None] * da[None, :] + damping)) @ qa.T


def precondition_embedding(grad: Tensor, da: Tensor, qg: Tensor, dg: Tensor, damping: float) -> Tensor:
    """`precondition_matrix` for an embedding's gradient (``num x dim``) with a diagonal `A`."""
    return ((grad @ qg) / (da[:, None] * dg[None, :] + damping)) @ qg.T


def kl_clip_factor(vg: float, kl_clip: float) -> float:
    """The KL-clipping scale ``nu = min(1, sqrt(kl_clip / vg))`` (Ba, Grosse & Martens, 2017,
    "Distributed second-order optimization using Kronecker-factored approximations").

    `vg` is ``sum_l lr_l^2 <V_l, D_l>`` over the preconditioned layers: the predicted change of
    the KL divergence of the model's distribution by the step. 1 when `vg` is not positive.

    >>> kl_clip_factor(4e-3, 1e-3), kl_clip_factor(1e-4, 1e-3)
    (0.5, 1.0)
    """
    if not vg > 0.0 or not math.isfinite(vg):
        return 1.0
    return min(1.0, math.sqrt(kl_clip / vg))
