"""BEV backbone: pseudo-image ``[S, C_in, H, W]`` → transmissible features ``[S, C, H/2, W/2]``."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01),
        nn.ReLU(inplace=True),
    )


class BEVBackbone(nn.Module):
    """Two-scale 2D CNN (PointPillars' RPN, trimmed) whose output is the feature map agents send.

    Args:
        in_channels: pillar channels.
        channels: ``(C1, C2)`` widths of the stride-2 and stride-4 stages.
        out_channels: ``C`` of the output (the transmitted feature map).
        layers: convolutions per stage after the strided one.

    Forward: ``[S, in_channels, H, W]`` → ``[S, out_channels, H/2, W/2]``.
    """

    stride = 2

    def __init__(
        self,
        in_channels: int = 64,
        channels: tuple[int, int] = (64, 128),
        out_channels: int = 64,
        layers: int = 2,
    ) -> None:
        super().__init__()
        c1, c2 = channels
        self.stage1 = nn.Sequential(
            conv_bn_relu(in_channels, c1, stride=2), *[conv_bn_relu(c1, c1) for _ in range(layers)]
        )
        self.stage2 = nn.Sequential(
            conv_bn_relu(c1, c2, stride=2), *[conv_bn_relu(c2, c2) for _ in range(layers)]
        )
        self.up2 = nn.Sequential(
            nn.ConvTranspose2d(c2, c1, 2, stride=2, bias=False),
            nn.BatchNorm2d(c1, eps=1e-3, momentum=0.01),
            nn.ReLU(inplace=True),
        )
        self.fuse = nn.Conv2d(2 * c1, out_channels, 1)

    def forward(self, pseudo_image: torch.Tensor) -> torch.Tensor:
        s1 = self.stage1(pseudo_image)
        s2 = self.up2(self.stage2(s1))
        return self.fuse(torch.cat([s1, s2], dim=1))
