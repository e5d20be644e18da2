"""``model.pitome_info``: what the last forward of a patched model merged."""

from dataclasses import dataclass, field

import torch


@dataclass
class PiToMeInfo:
    """Filled by every forward of a patched model (tensors of the last forward).

    - ``size``: float ``[B, T_out, 1]``, how many input tokens each output token stands for
      (None until a layer merged).
    - ``attention_mask``: ``[B, T_out]`` 0/1, the merged padding mask (text models).
    - ``source``: int32 ``[B, T0]``, the output token holding each input token
      (``trace_source=True``; ``pitome_kernels.source_matrix`` gives the 0/1 layout).
    - ``tokens``: the token count entering every layer, then the count out of the last one.
    """

    size: torch.Tensor | None = None
    attention_mask: torch.Tensor | None = None
    source: torch.Tensor | None = None
    tokens: list = field(default_factory=list)
