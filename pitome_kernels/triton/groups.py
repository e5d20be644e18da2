"""Walks over the groups of a plan (``members[offsets[g]:offsets[g + 1]]``, head first,
then sources by token index), for the kernels that reduce or differentiate per group."""

import triton
import triton.language as tl


@triton.jit
def group_block(offsets_row, T_OUT, BLOCK_G: tl.constexpr):
    """This program's block of output slots ``g``: ``(g, g_ok, start, cnt)``, with each
    group's first position in ``members`` and its member count."""
    g = tl.program_id(0) * BLOCK_G + tl.arange(0, BLOCK_G)
    g_ok = g < T_OUT
    start = tl.load(offsets_row + g, mask=g_ok, other=0)
    cnt = tl.load(offsets_row + g + 1, mask=g_ok, other=0) - start
    return g, g_ok, start, cnt


@triton.jit
def group_member(members_row, start, cnt, j, g_ok, x_cols, stride_xn, ok):
    """The ``j``-th member of every group of the block: ``(live, m, v)``, where ``live``
    marks the groups that have one, ``m`` is its token (int64) and ``v`` its row of ``x``
    (``x_cols``: ``[1, BLOCK_K]`` pointers to the columns; zeros where not ``live``)."""
    live = g_ok & (j < cnt)
    m = tl.load(members_row + start + j, mask=live, other=0).to(tl.int64)
    v = tl.load(x_cols + m[:, None] * stride_xn, mask=live[:, None] & ok, other=0.0)
    return live, m, v
