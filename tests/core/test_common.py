"""The one leaf of the core (``v2x.common``): the atomic-write helper (all or nothing, the user's
umask, the previous file kept on failure), the config helpers and device resolution, nothing of
the project imported but the modules its jobs live in, and no copy of them anywhere else."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from v2x.common import (
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    progress_enabled,
)


def test_writes_replace_whole_files_with_the_umask(tmp_path):
    target = tmp_path / "sub" / "a.json"
    old = os.umask(0o027)
    try:
        atomic_write_text(target, "one")
    finally:
        os.umask(old)
    assert target.read_text() == "one"
    assert target.stat().st_mode & 0o777 == 0o640
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]  # no temporary file left


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "a.csv"
    atomic_write_text(target, "kept")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as handle:
        handle.write("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_atomic_path_keeps_the_suffix_for_format_sniffing_writers(tmp_path):
    with atomic_path(tmp_path / "fig.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path and tmp.exists()
        tmp.write_bytes(b"\x89PNG")
    assert (tmp_path / "fig.png").read_bytes() == b"\x89PNG"
    with pytest.raises(ValueError, match="does not write"), atomic_open(tmp_path / "x", "r"):
        pass


#: The modules ``v2x.common``'s jobs live in (it re-exports their names).
COMMON_JOBS = ("v2x.config_checks", "v2x.atomic_files", "v2x.devices", "v2x.tensor_memo",
               "v2x.source_hash", "v2x.determinism")  # fmt: skip


def test_common_is_a_leaf():
    """``v2x.common`` imports, of the project, only the modules its jobs live in, and they
    import nothing else of the project (their order: ``tests/core/test_import_directions.py``)."""
    import importlib

    def project_imports(module: str) -> list[str]:
        tree = ast.parse(Path(importlib.import_module(module).__file__).read_text())
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        return [m for m in imported if m == "v2x" or m.startswith("v2x.")]

    for module in ("v2x.common", *COMMON_JOBS):
        assert not [m for m in project_imports(module) if m not in COMMON_JOBS], module


def test_to_plain_turns_hydra_nodes_paths_and_tuples_into_plain_python():
    from omegaconf import OmegaConf

    from v2x.common import to_plain

    node = OmegaConf.create({"a": 1, "b": "${a}", "c": [1, {"d": 2}]})
    assert to_plain(node) == {"a": 1, "b": 1, "c": [1, {"d": 2}]}
    assert type(to_plain(node)) is dict
    assert to_plain({"p": Path("/x/y"), "t": (1, 2), "n": None}) == {"p": "/x/y", "t": [1, 2], "n": None}
    thing = object()
    assert to_plain(thing) is thing and to_plain("awgn") == "awgn"


def test_resolve_device():
    import torch

    from v2x.common import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_a_device_this_process_cannot_compute_on_is_refused_naming_the_field():
    """``usable_device``: CPU and ``auto`` pass; a CUDA index beyond the visible devices (on any
    host) and, without CUDA, any CUDA device are refused with one message naming the field, the
    value and what is there; each entry point that takes a device from a config refuses it
    before any work (the sweep, training, the synthetic world's ray caster)."""
    import torch

    from v2x.common import usable_device
    from v2x.datasets.raycast_torch import TorchRaycaster
    from v2x.perception.train import setup_distributed
    from v2x.sweep import run_sweep

    assert usable_device("cpu", "x: field 'device'") == torch.device("cpu")
    assert usable_device("auto", "x: field 'device'").type in ("cpu", "cuda")
    with pytest.raises(ValueError, match=r"^x: field 'device' is 'cuda:99', but .* visible"):
        usable_device("cuda:99", "x: field 'device'")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device is visible.*use 'cpu' or 'auto'"):
            usable_device("cuda", "x: field 'device'")
    else:
        assert usable_device("cuda", "x: field 'device'").type == "cuda"
    with pytest.raises(ValueError, match=r"^sweep: field 'device' is 'cuda:99'"):
        run_sweep({"device": "cuda:99", "checkpoint": "untrained", "quiet": True})
    with pytest.raises(ValueError, match=r"^train: field 'train.device' is 'cuda:99'"):
        setup_distributed("cuda:99")
    with pytest.raises(ValueError, match=r"^dataset \(synthetic\): field 'device' is 'cuda:99'"):
        TorchRaycaster(device="cuda:99")


#: The plumbing of ``v2x.common`` by the module it lives in (a definition of one of these names
#: anywhere but its module, or a call of ``os.replace`` anywhere but ``v2x/atomic_files.py``, is a
#: copy).
PLUMBING = {"Registry": "common", "import_plugins": "common", "atomic_path": "atomic_files",
            "atomic_open": "atomic_files", "atomic_torch_save": "atomic_files",
            "atomic_write_bytes": "atomic_files", "atomic_write_text": "atomic_files",
            "to_plain": "config_checks", "_plain": "config_checks",
            "check_fields": "config_checks", "dataclass_from": "config_checks",
            "resolve_device": "devices", "usable_device": "devices",
            "check_whole": "config_checks", "check_switch": "config_checks"}  # fmt: skip


def test_the_plumbing_is_defined_once():
    root = Path(__file__).resolve().parents[2]
    copies = []
    for folder in ("v2x", "datasets", "perception", "semcom", "channels", "scripts", "benchmarks"):
        for path in sorted((root / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                defined = (
                    isinstance(node, ast.FunctionDef | ast.ClassDef)
                    and node.name in PLUMBING
                    and path != root / "v2x" / f"{PLUMBING[node.name]}.py"
                )
                replaces = (
                    path != root / "v2x" / "atomic_files.py"
                    and isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "replace"
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "os"
                )
                if defined or replaces:
                    copies.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not copies, "copies of v2x.common's plumbing:\n" + "\n".join(copies)


def test_tensor_memo_keeps_a_value_only_while_its_inputs_and_value_are_unchanged():
    import copy
    import gc
    import pickle

    import torch

    from v2x.common import TensorMemo

    memo, calls = TensorMemo(), []

    def double(t):
        return lambda: calls.append(1) or t * 2

    x = torch.arange(12.0).reshape(3, 4)
    first = memo.get([x], double(x))
    assert memo.get([x[:]], double(x)) is first and len(calls) == 1  # a view of the same values
    assert torch.equal(memo.get([x[1:]], double(x[1:])), x[1:] * 2) and len(calls) == 2
    x.add_(1)  # an in-place write to the input
    assert torch.equal(memo.get([x], double(x)), x * 2) and len(calls) == 3
    memo.get([x], double(x)).mul_(0)  # the caller wrote into the value it got
    assert torch.equal(memo.get([x], double(x)), x * 2) and len(calls) == 4
    # a freed input's successor at the same address is never taken for it
    for _ in range(20):
        y = torch.full((3, 4), 5.0)
        memo.get([y], double(y))
        address = y.data_ptr()
        del y
        gc.collect()
        z = torch.full((3, 4), 7.0)
        assert torch.equal(memo.get([z], double(z)), torch.full((3, 4), 14.0))
        if z.data_ptr() == address:
            break
    # size: least recently used dropped first
    two, calls = TensorMemo(size=2), []
    a, b, c = torch.ones(2), torch.zeros(2), torch.ones(3)
    for t in (a, b, a, c, a):
        two.get([t], double(t))
    assert len(calls) == 3  # a, b, c computed; a kept throughout (b dropped for c)
    two.get([b], double(b))
    assert len(calls) == 4
    # autograd history and inference tensors are never kept
    w = torch.ones(2, requires_grad=True)
    assert memo.get([w], lambda: w * 3) is not memo.get([w], lambda: w * 3)
    with torch.inference_mode():
        i = torch.ones(2)
    assert memo.get([i], lambda: [1]) is not memo.get([i], lambda: [1])
    # copies and pickles start empty
    assert copy.deepcopy(memo)._entries == {} and pickle.loads(pickle.dumps(memo))._entries == {}
    with pytest.raises(ValueError, match="size"):
        TensorMemo(size=0)


@pytest.mark.parametrize(
    ("quiet", "tty", "ci", "drawn"),
    [(False, True, None, True), (True, True, None, False), (False, False, None, False),
     (False, True, "true", False)],
)  # fmt: skip
def test_progress_bars_only_on_a_terminal_outside_ci(monkeypatch, quiet, tty, ci, drawn):
    class Stream:
        def isatty(self) -> bool:
            return tty

    monkeypatch.setattr("sys.stderr", Stream())
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    assert progress_enabled(quiet) is drawn
