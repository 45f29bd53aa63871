"""The tabular network: imputation, scaling and embeddings in front of an MLP, then a head."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def embedding_dim(cardinality: int) -> int:
    """Return the embedding width for a vocabulary of `cardinality` rows (fast.ai's rule)."""
    return max(2, min(32, round(1.6 * math.pow(cardinality, 0.56))))


class TabularNet(nn.Module):
    """Map raw numeric values (NaN for null) and category indices to logits or values."""

    mean: torch.Tensor
    std: torch.Tensor
    indicator_idx: torch.Tensor

    def __init__(
        self,
        numeric_mean: Sequence[float],
        numeric_std: Sequence[float],
        null_indicator: Sequence[bool],
        vocab_sizes: Sequence[int],
        n_outputs: int,
        hidden: Sequence[int] = (128, 64),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(list(numeric_mean), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(list(numeric_std), dtype=torch.float32))
        indicator = [i for i, flag in enumerate(null_indicator) if flag]
        self.register_buffer("indicator_idx", torch.tensor(indicator, dtype=torch.long))
        self.embeddings = nn.ModuleList(nn.Embedding(n, embedding_dim(n)) for n in vocab_sizes)
        width = len(numeric_mean) + len(indicator) + sum(embedding_dim(n) for n in vocab_sizes)
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
            width = size
        layers.append(nn.Linear(width, n_outputs))
        self.mlp = nn.Sequential(*layers)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Return raw outputs: logits for classification, standardised values for regression."""
        parts = []
        if numeric.shape[1] > 0:
            missing = torch.isnan(numeric)
            filled = torch.where(missing, self.mean.expand_as(numeric), numeric)
            parts.append((filled - self.mean) / self.std)
            if self.indicator_idx.numel() > 0:
                parts.append(missing.index_select(1, self.indicator_idx).to(numeric.dtype))
        for j, emb in enumerate(self.embeddings):
            parts.append(emb(categorical[:, j]))
        return self.mlp(torch.cat(parts, dim=1))


class OutputHead(nn.Module):
    """Turn raw network outputs into probabilities or values in target units."""

    def __init__(self, task: str, target_mean: float = 0.0, target_std: float = 1.0) -> None:
        super().__init__()
        self.task = task
        self.target_mean = float(target_mean)
        self.target_std = float(target_std)

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """Return [N, C] probabilities, or [N] values for regression."""
        if self.task == "binary":
            p = torch.sigmoid(raw[:, 0])
            return torch.stack([1.0 - p, p], dim=1)
        if self.task == "multiclass":
            return torch.softmax(raw, dim=1)
        return raw[:, 0] * self.target_std + self.target_mean


class InferencePipeline(nn.Module):
    """Network plus head, taking one 1-D tensor per raw feature column (the ONNX signature)."""

    def __init__(self, net: TabularNet, head: OutputHead, n_numeric: int) -> None:
        super().__init__()
        self.net = net
        self.head = head
        self.n_numeric = n_numeric

    def forward(self, *columns: torch.Tensor) -> torch.Tensor:
        """Stack per-column inputs (numeric first, then category indices) and predict."""
        batch = columns[0].shape[0]
        nums = columns[: self.n_numeric]
        cats = columns[self.n_numeric :]
        numeric = torch.stack(nums, dim=1) if nums else torch.zeros(batch, 0, dtype=torch.float32)
        categorical = torch.stack(cats, dim=1) if cats else torch.zeros(batch, 0, dtype=torch.long)
        return self.head(self.net(numeric, categorical))
