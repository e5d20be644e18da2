"""The baseline every speed claim is measured against: a PiToMe layer written the way the
paper's code writes it — a full T x T similarity, elementwise passes, argsort, gathers,
``scatter_reduce`` and concatenations, each a separate PyTorch op."""

import torch
import torch.nn.functional as F


def plan(metric: torch.Tensor, r: int, margin: float, class_token: bool):
    """Indices of the ``pitome`` plan: (protected, sources, destinations, dst index)."""
    if class_token:
        metric = metric[:, 1:]
    batch, tokens, _ = metric.shape
    u = F.normalize(metric, p=2, dim=-1)
    sim = u @ u.transpose(-1, -2)
    energy = F.elu(sim - margin).mean(dim=-1)
    order = torch.argsort(energy, dim=-1, descending=True)
    mergeable, protected = order[:, : 2 * r], order[:, 2 * r :]
    src, dst = mergeable[:, 0::2], mergeable[:, 1::2]
    scores = sim.gather(-1, dst.unsqueeze(-2).expand(batch, tokens, r))
    scores = scores.gather(-2, src.unsqueeze(-1).expand(batch, r, r))
    return protected, src, dst, scores.argmax(dim=-1)


def merge(indices, x: torch.Tensor, mode: str, class_token: bool) -> torch.Tensor:
    protected, src_idx, dst_idx, match = indices
    if class_token:
        cls, x = x[:, :1], x[:, 1:]
    batch, _, dim = x.shape
    rows = torch.arange(batch, device=x.device)[:, None]
    kept = x[rows, protected]
    src, dst = x[rows, src_idx], x[rows, dst_idx]
    dst = dst.scatter_reduce(-2, match[..., None].expand(-1, -1, dim), src, reduce=mode)
    parts = [cls, kept, dst] if class_token else [kept, dst]
    return torch.cat(parts, dim=1)


def merge_wavg(indices, x: torch.Tensor, size: torch.Tensor, class_token: bool):
    x = merge(indices, x * size, "sum", class_token)
    size = merge(indices, size, "sum", class_token)
    return x / size, size


def layer(metric, x, size, r: int, margin: float, class_token: bool):
    """Plan then size-weighted merge: one PiToMe layer."""
    with torch.no_grad():
        indices = plan(metric, r, margin, class_token)
    return merge_wavg(indices, x, size, class_token)
