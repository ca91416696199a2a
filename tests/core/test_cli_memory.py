"""reuse_freed_memory: the apps' allocator setting, checked by the page faults it saves."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

PAGES = 16 << 20 >> 10  # pages of 4 KiB in one 64 MB float32 tensor (glibc maps blocks > 32 MB)
PROBE = textwrap.dedent(
    """
    import resource, torch
    from v2x.cli import reuse_freed_memory
    print(int(reuse_freed_memory()))
    x = torch.ones(16 << 20)  # 64 MB, kept
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(8):  # temporaries of its size made and freed, as a sweep's operations do
        y = torch.where(x > 0, x, 0.0)
        z = y * 2
        del y
        w = z + 1
        del z, w
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def _probe(**env: str) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**os.environ, **env},
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return bool(int(out[0])), int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_tensors_are_reused_with_far_fewer_page_faults():
    """glibc's default maps and unmaps every block over 32 MB, so each temporary of a 64 MB
    tensor faults its pages in again (measured here with 256 MB: 1.70 M faults for the probe);
    after ``reuse_freed_memory`` the heap's freed blocks are reused (0.48 M, the first round's
    allocations mostly). ``V2X_DEFAULT_MALLOC=1`` leaves glibc's settings alone."""
    default_applied, default_faults = _probe(V2X_DEFAULT_MALLOC="1")
    assert not default_applied
    if default_faults < 8 * PAGES:  # transparent huge pages (or another libc) make it cheap
        pytest.skip(f"the default allocator faulted only {default_faults} pages here")
    applied, faults = _probe(V2X_DEFAULT_MALLOC="")
    assert applied and faults < default_faults / 2
