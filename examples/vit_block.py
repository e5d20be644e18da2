"""A pre-norm ViT block that merges tokens with PiToMe, written with the Python API.

The plan is made once per layer from the attention keys averaged over heads and applied to
the hidden states after the attention residual; proportional attention (``+ log(size)`` on
the key axis, SDPA's additive mask) keeps merged tokens at their weight. Run it:
``python examples/vit_block.py`` (12 ViT-S layers, 197 -> 60 tokens).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

import pitome_kernels as pk


class MergingBlock(nn.Module):
    """``(x [B, T, dim], size [B, T, 1]) -> (x, size)`` with ``T - r`` tokens out."""

    def __init__(self, dim, heads, ratio, margin):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.heads, self.ratio, self.margin = heads, ratio, margin

    def forward(self, x, size):
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        bias = size.log().view(B, 1, 1, T)                                  # proportional attention
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        x = x + self.proj(out.transpose(1, 2).reshape(B, T, D))
        plan = pk.plan(k.mean(1), pk.ratio_to_r(T, self.ratio, class_token=True),
                       margin=self.margin, class_token=True)               # keys averaged over heads
        x, size = pk.merge_wavg(plan, x, size)
        return x + self.mlp(self.norm2(x)), size


def run(batch: int = 2, layers: int = 12):
    """The tokens and sizes after ``layers`` merging blocks of width 384 on random input."""
    blocks = [MergingBlock(384, 6, ratio=0.9, margin=0.75 * (1 - l / layers)) for l in range(layers)]
    tokens, size = torch.randn(batch, 197, 384), torch.ones(batch, 197, 1)
    with torch.no_grad():
        for block in blocks:
            tokens, size = block(tokens, size)
    return tokens, size


if __name__ == "__main__":
    tokens, size = run()
    print(f"tokens {list(tokens.shape)}; every output stands for {size.sum(1).flatten().tolist()} input tokens")
