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


class PointPillarsBackbone(nn.Module):
    """PointPillars' standard RPN (Lang et al. 2019; OpenCOOD's ``BaseBEVBackbone``).

    Three stages, each a strided 3×3 convolution followed by ``layer_nums[i]`` 3×3
    convolutions (``filters[i]`` channels, strides 2/2/2 by default); every stage's output is
    upsampled by a transposed convolution to the first stage's resolution (``upsample_filters[i]``
    channels each) and the three are concatenated: with the defaults 3/5/8 blocks,
    64/128/256 filters and 128/128/128 upsampled channels, a 384-channel map at half the
    pseudo-image resolution — the map agents send and fuse, as in cooperative PointPillars
    (OpenCOOD/HEAL ``point_pillar_*`` configurations).

    Args:
        in_channels: pillar channels.
        layer_nums: convolutions per stage after the strided one.
        filters: channels per stage.
        upsample_filters: channels of each stage after upsampling (they sum to the output).

    Forward: ``[S, in_channels, H, W]`` → ``[S, sum(upsample_filters), H/2, W/2]``.
    """

    stride = 2

    def __init__(
        self,
        in_channels: int = 64,
        layer_nums: tuple[int, ...] = (3, 5, 8),
        filters: tuple[int, ...] = (64, 128, 256),
        upsample_filters: tuple[int, ...] = (128, 128, 128),
    ) -> None:
        super().__init__()
        if not len(layer_nums) == len(filters) == len(upsample_filters) >= 1:
            raise ValueError(
                "PointPillarsBackbone: 'layer_nums', 'filters' and 'upsample_filters' need one "
                f"entry per stage, got {list(layer_nums)}, {list(filters)}, {list(upsample_filters)}"
            )
        self.stages = nn.ModuleList()
        self.ups = nn.ModuleList()
        c_in = in_channels
        for i, (n, c, u) in enumerate(zip(layer_nums, filters, upsample_filters, strict=True)):
            self.stages.append(
                nn.Sequential(conv_bn_relu(c_in, c, stride=2), *[conv_bn_relu(c, c) for _ in range(n)])
            )
            scale = 2**i  # stage i is at stride 2^(i+1); the output at stride 2
            self.ups.append(
                nn.Sequential(
                    nn.ConvTranspose2d(c, u, scale, stride=scale, bias=False),
                    nn.BatchNorm2d(u, eps=1e-3, momentum=0.01),
                    nn.ReLU(inplace=True),
                )
            )
            c_in = c
        self.out_channels = sum(upsample_filters)

    def forward(self, pseudo_image: torch.Tensor) -> torch.Tensor:
        x, outs = pseudo_image, []
        for stage, up in zip(self.stages, self.ups, strict=True):
            x = stage(x)
            outs.append(up(x))
        return torch.cat(outs, dim=1)
