"""Residual-stream activations of a causal LM on task inputs."""

from __future__ import annotations

import numpy as np


def residuals(model, ids: np.ndarray, batch: int = 1000) -> np.ndarray:
    """Hidden states after the embeddings and after every block.

    Args: model (HF causal LM), ids (N, T) token ids.
    Returns: float32 (L + 1, N, T, H); index 0 is the embedding output, l the output of block l.
    """
    import torch

    outs = []
    with torch.no_grad():
        for i in range(0, len(ids), batch):
            o = model(input_ids=torch.as_tensor(ids[i:i + batch]), output_hidden_states=True)
            outs.append(torch.stack(o.hidden_states).float().numpy())
    return np.concatenate(outs, axis=1)


def label_logits(model, ids: np.ndarray, position: int = 1, batch: int = 2000):
    """Next-token logits at ``position`` for every row of ids (N, T): torch (N, V)."""
    import torch

    with torch.no_grad():
        return torch.cat([model(input_ids=torch.as_tensor(ids[i:i + batch])).logits[:, position]
                          for i in range(0, len(ids), batch)])
