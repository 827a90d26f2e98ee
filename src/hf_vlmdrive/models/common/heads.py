"""MLP heads shared by the families."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class MLPHead(nn.Module):
    """`Linear -> LayerNorm -> GELU -> Dropout` blocks followed by a final `Linear`.

    With `hidden_sizes=(512, 512)` and `out_features=40` this is exactly the reference waypoint head:
    Linear 512 -> LayerNorm -> GELU -> Dropout 0.1 -> Linear 512 -> LayerNorm -> GELU -> Dropout 0.1
    -> Linear 40.
    """

    def __init__(self, in_features: int, hidden_sizes: Sequence[int], out_features: int, dropout: float = 0.1):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, out_features))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
