"""Every case of the official golden vectors, through the public API, on every backend."""

import pytest
import torch

import pitome_kernels as pk
from _support import DEVICE, golden_r, load_golden, runnable_backends

_, CASES = load_golden()
CASE_IDS = [
    f"{k}-{c['variant']}-{c['mode']}-T{c['input'][1]}-cls{int(c['class_token'])}-r{c['ratio']}-m{c['margin']}"
    for k, c in enumerate(CASES)
]
BACKENDS = ["auto"] + runnable_backends()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_golden_case(golden, case, backend):
    inputs, _ = golden
    item = inputs[tuple(case["input"])]
    metric, x, size = (item[k].to(DEVICE) for k in ("metric", "x", "size"))
    variant = case["variant"]
    r = golden_r(case)

    if "energy" in case:
        kernel = "gauss" if variant == "pitome_text" else "elu"
        e = pk.energy(metric, margin=case["margin"], kernel=kernel, class_token=case["class_token"],
                      backend=backend)
        torch.testing.assert_close(e.cpu(), case["energy"], atol=1e-5, rtol=1e-5)

    p = pk.plan(metric, r, variant=variant, margin=case["margin"], class_token=case["class_token"],
                distill_token=case["distill_token"], backend=backend)
    assert p.r == case["r"]
    mode = case["mode"]
    if mode == "wavg":
        out_x, out_size = pk.merge_wavg(p, x, size if case["use_size"] else None, backend=backend)
        torch.testing.assert_close(out_x.cpu(), case["out_x"], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out_size.cpu(), case["out_size"], atol=1e-5, rtol=1e-5)
    elif mode == "source":
        assert torch.equal(pk.merge_source(p).cpu(), case["out_source"])
        # the integer map and the amax merge of an identity give the same matrix
        eye = torch.eye(p.num_tokens, device=DEVICE).expand(x.shape[0], -1, -1)
        assert torch.equal(pk.merge_source(p, eye, backend=backend).cpu(), case["out_source"])
    else:
        out_x = pk.merge(p, x, mode, backend=backend)
        torch.testing.assert_close(out_x.cpu(), case["out_x"], atol=1e-5, rtol=1e-5)
