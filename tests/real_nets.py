"""Networks written the way their authors wrote them, shared by the tests of structural techniques on real
graphs (``tests/techniques/test_cut_real_graphs.py``, ``test_prune_structured_real.py``)."""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn


class Crepe(nn.Module):
    """torchcrepe.Crepe as it is written (``torchcrepe/model.py``) at small widths (``first``: conv1's).
    ``layer()`` pads before each conv, so no conv maps a tensor to one of its shape; conv3 and conv4 (8 -> 8
    channels, stride 1) give back the length they were given before padding: the layer cuts."""

    def __init__(self, first: int = 16) -> None:
        super().__init__()
        in_channels = [1, first, 8, 8, 8, 16]
        out_channels = [first, 8, 8, 8, 16, 32]
        self.in_features = out_channels[-1] * 4  # 4 time steps are left after six (2, 1) max pools
        kernel_sizes = [(512, 1)] + 5 * [(64, 1)]
        strides = [(4, 1)] + 5 * [(1, 1)]
        batch_norm_fn = functools.partial(nn.BatchNorm2d, eps=0.0010000000474974513, momentum=0.0)
        for i in range(6):
            conv = nn.Conv2d(in_channels[i], out_channels[i], kernel_sizes[i], stride=strides[i])
            setattr(self, f"conv{i + 1}", conv)
            setattr(self, f"conv{i + 1}_BN", batch_norm_fn(num_features=out_channels[i]))
        self.classifier = nn.Linear(self.in_features, 360)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        x = self.layer(x, self.conv6, self.conv6_BN)
        x = x.permute(0, 2, 1, 3).reshape(-1, self.in_features)
        return torch.sigmoid(self.classifier(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, None, :, None]
        x = self.layer(x, self.conv1, self.conv1_BN, (0, 0, 254, 254))
        x = self.layer(x, self.conv2, self.conv2_BN)
        x = self.layer(x, self.conv3, self.conv3_BN)
        x = self.layer(x, self.conv4, self.conv4_BN)
        return self.layer(x, self.conv5, self.conv5_BN)

    def layer(self, x: torch.Tensor, conv: nn.Module, batch_norm: nn.Module, padding=(0, 0, 31, 32)) -> torch.Tensor:
        x = F.pad(x, padding)
        x = conv(x)
        x = F.relu(x)
        x = batch_norm(x)
        return F.max_pool2d(x, (2, 1), (2, 1))
