"""One tile of the similarity ``S = u @ u^T`` (the ``T x T`` matrix is never stored)."""

import triton
import triton.language as tl


@triton.jit
def similarity_tile(u_base, row_tok, row_ok, col_tok, col_ok, C, stride_un, stride_uc,
                    ACC: tl.constexpr, BLOCK_C: tl.constexpr):
    """``S[i, j] = <u[row_tok[i]], u[col_tok[j]]>`` (int64 token indices; masked rows and
    columns read zeros), ``tl.dot`` over ``BLOCK_C``-feature chunks in IEEE float: no TF32,
    which would round the operands."""
    s = tl.zeros((row_tok.shape[0], col_tok.shape[0]), dtype=ACC)
    for c0 in range(0, C, BLOCK_C):
        cc = c0 + tl.arange(0, BLOCK_C)
        c_ok = cc < C
        ui = tl.load(u_base + row_tok[:, None] * stride_un + cc[None, :] * stride_uc,
                     mask=row_ok[:, None] & c_ok[None, :], other=0.0)
        uj = tl.load(u_base + col_tok[None, :] * stride_un + cc[:, None] * stride_uc,
                     mask=col_ok[None, :] & c_ok[:, None], other=0.0)
        s = tl.dot(ui, uj, s, input_precision="ieee", out_dtype=ACC)
    return s
