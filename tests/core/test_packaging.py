"""Packaging: one ``v2x`` namespace, no shadowing top-level modules, configs ship with it."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from importlib import resources
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAPPED = {"v2x": "v2x", "v2x.datasets": "datasets", "v2x.perception": "perception",
          "v2x.semcom": "semcom", "v2x.channels": "channels", "v2x.conf": "conf"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_package_dir_maps_every_top_level_folder_under_v2x():
    assert _pyproject()["tool"]["setuptools"]["package-dir"] == MAPPED


def test_every_python_package_on_disk_is_listed():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    on_disk = set()
    for name, folder in MAPPED.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            on_disk.add(".".join([name, *rel.parts]) if rel.parts else name)
    # Folders of package data (Hydra config groups, shipped checkpoints) are packages too, or
    # setuptools warns at every install that the "package would be ignored".
    for name, folder in MAPPED.items():
        for sub in (ROOT / folder).rglob("*"):
            rel = sub.relative_to(ROOT / folder)
            if sub.is_dir() and not any(p == "__pycache__" or p.startswith(".") for p in rel.parts):
                on_disk.add(".".join([name, *rel.parts]))
    assert on_disk == listed
    assert all(p == "v2x" or p.startswith("v2x.") for p in listed)


def test_pyproject_uses_no_deprecated_setuptools_forms():
    """``pip install -e .`` prints no ``SetuptoolsDeprecationWarning``: the license is an SPDX
    string (a ``{text = ...}`` table is deprecated), with a setuptools that understands it."""
    project = _pyproject()
    assert isinstance(project["project"]["license"], str)
    requires = project["build-system"]["requires"]
    assert any(r.replace(" ", "").startswith("setuptools>=") for r in requires)
    version = next(r for r in requires if r.startswith("setuptools")).split(">=")[1]
    assert int(version.split(".")[0]) >= 77


def test_subpackages_import_under_the_namespace():
    out = subprocess.run(
        [sys.executable, "-c", "import v2x.channels, v2x.semcom, v2x.perception, v2x.datasets"],
        capture_output=True, text=True, cwd="/",
    )
    assert out.returncode == 0, out.stderr


def test_no_top_level_datasets_or_channels_from_this_project():
    """Outside the checkout, ``datasets``/``channels`` must not resolve into this project."""
    code = (
        "import importlib.util, json\n"
        "out = {}\n"
        "for name in ('datasets', 'channels', 'perception', 'semcom', 'conf'):\n"
        "    spec = importlib.util.find_spec(name)\n"
        "    out[name] = None if spec is None else (spec.origin or str(list(spec.submodule_search_locations or [])))\n"
        "print(json.dumps(out))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    for name, origin in json.loads(out.stdout).items():
        assert origin is None or str(ROOT) not in origin, f"top-level {name!r} resolves to {origin}"


def test_hydra_configs_ship_inside_the_package():
    conf = resources.files("v2x.conf")
    assert conf.joinpath("train.yaml").is_file()


def test_python_m_v2x_lists_the_apps():
    out = subprocess.run([sys.executable, "-m", "v2x", "--help"], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0
    for app in ("v2x-generate", "v2x-train", "v2x-eval", "v2x-sweep", "v2x-plot", "v2x-link"):
        assert app in out.stdout
