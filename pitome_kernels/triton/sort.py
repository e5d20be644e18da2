"""In-register sorts for the fused plan kernel: distinct keys ascending, and the order of
float32 values descending with ties to the lower index (``torch.sort(stable=True)``)."""

import triton
import triton.language as tl


@triton.jit
def sort_distinct(x, BITONIC: tl.constexpr):
    """Ascending sort of a 1-D tensor of DISTINCT keys.

    ``BITONIC``: ``tl.sort`` (the GPU path). Otherwise a counting sort through two
    ``[n, n]`` comparisons: the same result, O(n^2) work, which Triton's CPU interpreter
    runs far faster than its element-wise emulation of the bitonic network.
    """
    if BITONIC:
        return tl.sort(x)
    else:
        rank = tl.sum((x[None, :] < x[:, None]).to(tl.int32), axis=1)  # rank of x[i]
        pos = tl.arange(0, x.shape[0])
        hit = rank[None, :] == pos[:, None]  # [q, i]: x[i] goes to position q
        return tl.sum(tl.where(hit, x[None, :], tl.zeros_like(x)[None, :]), axis=1)


@triton.jit
def desc_order(v, idx, ok, BITONIC: tl.constexpr):
    """Positions ``idx`` of ``v`` (float32) sorted by value descending, ties to the lower
    index; masked-off entries (``~ok``) go last.

    The keys ``desc(bits(v)) << 32 | idx`` are distinct, so ``sort_distinct`` applies:
    ``desc`` is a monotone decreasing int32 image of the float32 value.
    """
    v = tl.where(v == 0.0, 0.0, v)  # -0.0 ties with +0.0, as in torch.sort
    bits = v.to(tl.int32, bitcast=True)
    asc = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # monotone increasing int32 image
    desc = tl.where(ok, ~asc, 2147483647)
    key = (desc.to(tl.int64) << 32) | idx.to(tl.int64)
    key = sort_distinct(key, BITONIC)
    return key.to(tl.int32)  # the low 32 bits: the index
