"""Building a code block (Sionna) must not disturb torch's seeded random stream."""

from __future__ import annotations

import torch

from v2x.semcom.fec import block_code


def test_building_a_block_code_leaves_the_global_generator_alone():
    block_code.cache_clear()
    torch.manual_seed(123)
    block_code(7, 1024)  # first build of this code: Sionna draws random numbers while building
    after_build = torch.rand(8)
    torch.manual_seed(123)
    untouched = torch.rand(8)
    assert torch.equal(after_build, untouched)
