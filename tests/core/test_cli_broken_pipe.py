"""Output into a pipe whose reader went away (``v2x-link | head -3``) ends an app quietly with
status 141, as the Python docs advise for SIGPIPE; it used to print a BrokenPipeError traceback.

Each case runs in its own interpreter: ``user_errors`` then points fd 1 at devnull, which must
not touch pytest's own capture of fd 1. No case depends on pipe-buffer timing: the error is
raised directly, or the pipe's read end is closed before anything is written."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_WRAPPED = """
from v2x.cli import user_errors

@user_errors
def main() -> None:
    print("a line for a reader that has gone")
    {body}

main()
"""

_CLOSED_READER = """
import os
read_end, write_end = os.pipe()
os.close(read_end)  # the reader is gone before anything is written: every write fails
os.dup2(write_end, 1)
os.close(write_end)
"""


@pytest.mark.parametrize(
    "program",
    [_WRAPPED.format(body="raise BrokenPipeError(32, 'Broken pipe')"),
     # buffered stdout (no PYTHONUNBUFFERED): the pipe breaks at the wrapper's flush, not at exit
     _CLOSED_READER + _WRAPPED.format(body="")],
    ids=["raised", "buffered-output"],
)  # fmt: skip
def test_a_broken_pipe_exits_quietly_with_status_141(tmp_path, program):
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    proc = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True, text=True, check=False, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert (proc.returncode, proc.stderr) == (141, "")  # 128 + SIGPIPE, as a shell reports it
