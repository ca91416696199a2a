"""Export ``CoopFrame``s (e.g. the synthetic world's) into the real datasets' layouts.

``export_frames(frames, root, "v2xsim")`` writes V2X-Sim 2.0 (nuScenes tables + ``.pcd.bin``),
``export_frames(frames, root, "dair_v2x")`` writes DAIR-V2X-C (``data_info.json``, ``.pcd``,
calibrations, side and cooperative labels), ``export_frames(frames, root, "opv2v")`` OPV2V
(per agent ``<frame>.yaml`` and ``.pcd``, under ``root/test``). Each returns the writer's summary
dict. What a format cannot hold is documented in the writers
(``v2x.datasets.v2xsim_writer.write_v2xsim``, ``v2x.datasets.dair_writer.write_dair_v2x_c``,
``v2x.datasets.opv2v_writer.write_opv2v``): DAIR-V2X-C keeps two agents per frame (the ego vehicle
and the nearest RSU) and OPV2V the vehicles and one RSU, counting the others in
``agents_not_written``; V2X-Sim keeps every agent, with kinds beyond vehicle/RSU and per-agent
visibility in its ``v2x_frames.json`` side table.

Command line (synthetic sequences → a dataset folder; ``--help`` prints ``USAGE``)::

    python -m v2x.datasets.export --format dair_v2x --out /tmp/dair --seeds 0 1 --frames 20
"""

from __future__ import annotations

import argparse
import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from v2x.datasets.frame import CoopFrame

EXPORT_FORMATS: tuple[str, ...] = ("v2xsim", "dair_v2x", "opv2v")

#: What ``--help`` says before the options (the module docstring is for Python readers).
DESCRIPTION = """\
Generate synthetic sequences (the built-in town, one per seed) and write them in
a real dataset's layout, then print the writer's summary:
  v2xsim    V2X-Sim 2.0: nuScenes tables + .pcd.bin, every agent, one scene per seed
  dair_v2x  DAIR-V2X-C: data_info.json, .pcd, calibrations, labels; the ego vehicle
            and its nearest RSU per frame
  opv2v     OPV2V (OpenCDA / OpenCOOD): test/<scenario>/<agent>/<frame>.yaml and .pcd;
            the vehicles and one RSU, one scenario per seed
docs/real_data.md says what each layout holds and how to read it back."""
#: Examples under the options of ``--help`` (the same command lines as docs/real_data.md).
USAGE = """examples:
  python -m v2x.datasets.export --format v2xsim --out /tmp/v2xsim --seeds 0 1 --frames 2
  python -m v2x.datasets.export --format dair_v2x --out /tmp/dair --frames 2 --pcd-data binary_compressed
  python -m v2x.datasets.export --format opv2v --out /tmp/opv2v --seeds 0 1 --frames 2
read back (every scene; V2X-Sim's shipped split names the real dataset's 100 scenes):
  v2x-sweep data.source=v2xsim data.path=/tmp/v2xsim data.num_frames=4 grid.snr_db='[10]'
  v2x-sweep data.source=dair_v2x data.path=/tmp/dair data.num_frames=2 grid.snr_db='[10]'
  v2x-sweep data.source=opv2v data.path=/tmp/opv2v +data.reader.split=test data.num_frames=4 grid.snr_db='[10]'"""


def export_frames(
    frames: Iterable[CoopFrame], root: str | os.PathLike, fmt: str, **writer_kwargs
) -> dict:
    """Write ``frames`` under ``root`` in format ``fmt`` (one of ``EXPORT_FORMATS``).

    ``writer_kwargs`` go to the format's writer (e.g. ``sensor_to_ego`` for V2X-Sim,
    ``lidar_to_novatel`` / ``pcd_data`` for DAIR-V2X-C). ``root`` must be new or an empty
    folder (``ValueError`` otherwise): written over another export, the new tables would sit
    beside the old one's point clouds and labels, which no table names any more.
    """
    _check_empty_folder(Path(root))
    if fmt == "v2xsim":
        from v2x.datasets.v2xsim_writer import write_v2xsim

        return write_v2xsim(frames, root, **writer_kwargs)
    if fmt == "dair_v2x":
        from v2x.datasets.dair_writer import write_dair_v2x_c

        return write_dair_v2x_c(frames, root, **writer_kwargs)
    if fmt == "opv2v":
        from v2x.datasets.opv2v_writer import write_opv2v

        return write_opv2v(frames, root, **writer_kwargs)
    raise ValueError(f"export_frames: field 'fmt' must be one of {EXPORT_FORMATS}, got {fmt!r}")


def _check_empty_folder(root: Path) -> None:
    """``ValueError`` naming ``root`` when it is a file or a folder with anything in it."""
    if not root.exists():
        return
    if not root.is_dir():
        raise ValueError(f"export: --out {root} is a file; expected a new or empty folder")
    entries = sorted(p.name for p in root.iterdir())
    if entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise ValueError(
            f"export: --out {root} is not empty ({len(entries)} entries: {shown}); expected a "
            "new or empty folder (written over another export, the new tables would sit beside "
            "the old point clouds and labels)"
        )


def main(argv: Sequence[str] | None = None) -> dict:
    """Generate synthetic sequences (default town config) and export them; prints the summary."""
    from v2x.datasets.pcd import PCD_DATA_KINDS

    parser = argparse.ArgumentParser(
        prog="python -m v2x.datasets.export",
        description=DESCRIPTION,
        epilog=USAGE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    parser.add_argument("--out", required=True, help="output dataset folder")
    parser.add_argument(
        "--seeds", type=_whole(0), nargs="+", default=[0], help="one sequence per seed"
    )
    parser.add_argument(
        "--frames", type=_whole(1), default=10, help="frames per sequence (10 Hz), >= 1"
    )
    parser.add_argument(
        "--pcd-data",
        choices=PCD_DATA_KINDS,
        help="PCD encoding of the point clouds, --format dair_v2x (default binary) or opv2v "
        "(default ascii, as OpenCDA writes them)",
    )
    args = parser.parse_args(argv)
    if args.pcd_data is not None and args.format == "v2xsim":  # (it was ignored)
        parser.error("argument --pcd-data: applies to --format dair_v2x and opv2v, not v2xsim")
    from v2x.datasets.synthetic import generate_sequence
    from v2x.datasets.synthetic_config import SyntheticConfig

    frames = itertools.chain.from_iterable(
        generate_sequence(SyntheticConfig(), seed, args.frames) for seed in args.seeds
    )
    default_pcd = {"dair_v2x": "binary", "opv2v": "ascii"}  # (OpenCDA writes ascii)
    kwargs = {"pcd_data": args.pcd_data or default_pcd[args.format]} if args.format in default_pcd else {}
    try:
        summary = export_frames(frames, args.out, args.format, **kwargs)
    except (ValueError, OSError) as exc:  # one line naming the value or path, status 2
        parser.error(str(exc))
    print(summary)
    return summary


def _whole(least: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number >= ``least`` (argparse names the option)."""

    def parse(text: str) -> int:
        value = int(text)  # (ValueError: argparse says "invalid parse value")
        if value < least:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {least}, got {value}")
        return value

    parse.__name__ = f"whole number >= {least}"
    return parse


if __name__ == "__main__":
    main()
