"""What the command-line apps share: user errors as one line, Ctrl-C as one line, and an
allocator that reuses freed memory (``reuse_freed_memory``). An override of a key the config
does not have, and a launcher whose optional extra is not installed, are one line too, before
Hydra composes anything (``check_override_keys``, ``check_launcher``). A single value where a
list is expected (``train.modes=max``) is refused too, not split into letters (``check_lists``).

A user error (a ``ValueError`` or ``FileNotFoundError`` from validating the config or reading
inputs: every message names the field, the value and the valid choices; or any other
``OSError`` that names the path the file system refused, e.g. a file where a folder was to be
made) is printed as a single ``error: …`` line on stderr and the app exits with status 2,
without a traceback. The folders an app writes to are checked before it computes anything
(``v2x.output_folders``). Set
``V2X_TRACEBACK=1`` to get the traceback instead. A run stopped for lack of memory
(``OutOfResources``: its message says what was saved and which settings to lower) is printed
the same way and exits with status 3. Ctrl-C prints one line (a sweep says what was
saved and how to resume) and exits with status 130. ``SIGTERM`` — what Slurm sends a job
script's processes at its time limit, ``timeout`` by default, ``kill`` — is handled the same way
(status 143), so a sweep stopped that way still saves every group it finished. Output piped into
a reader that stops early (``v2x-link | head -3``) ends the app quietly with status 141.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: Environment variable that shows the traceback of user errors.
TRACEBACK_ENV = "V2X_TRACEBACK"
#: Environment variable that keeps glibc malloc's own settings in the apps (any value but
#: empty, 0, false, no): see ``reuse_freed_memory``.
DEFAULT_MALLOC_ENV = "V2X_DEFAULT_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def reuse_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for the next allocation instead of returning it.

    By default glibc serves every block over 32 MB with its own ``mmap`` and unmaps it on free,
    so each new tensor of that size is faulted in page by page again (zero-filled by the
    kernel). On the CPU a sweep of the standard detector moves 100–200 MB tensors per operation
    and spent more time in those page faults than computing (2 frames of the main job: 71 s of
    system time in 107 s). Here blocks come from the heap (``M_MMAP_MAX = 0``) and freed heap
    is never returned (``M_TRIM_THRESHOLD`` = -1, i.e. ``SIZE_MAX``): the same job then took
    55 s instead of 99 s, 10 s of it system time, with the same results.
    The cost is that the process keeps its peak memory until it exits. Every app calls this at
    start (``user_errors``); ``V2X_DEFAULT_MALLOC=1`` keeps glibc's settings. Returns whether the
    settings were applied (False off glibc, e.g. macOS or musl)."""
    if _env_flag(DEFAULT_MALLOC_ENV) or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, -1))  # -1: SIZE_MAX


def traceback_wanted() -> bool:
    """Whether ``V2X_TRACEBACK`` asks for tracebacks (any value but empty, 0, false, no)."""
    return _env_flag(TRACEBACK_ENV)


class OutOfResources(RuntimeError):
    """A run stopped for lack of memory (device or host); the message says what was saved and
    which settings to lower. The apps print it as one line and exit with status 3."""


class Terminated(KeyboardInterrupt):
    """``SIGTERM`` received: unwinds like Ctrl-C, so what was computed is saved first."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated(f"terminated by {signal.Signals(signum).name}")


def _terminated(exc: BaseException) -> bool:
    """Whether ``exc`` (e.g. a sweep's ``SweepInterrupted``) was caused by a ``SIGTERM``."""
    while exc is not None:
        if isinstance(exc, Terminated):
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def _interrupt_on_sigterm() -> Any:
    """Install ``_on_sigterm`` for ``SIGTERM`` (main thread only); returns the previous handler,
    or ``None`` when nothing was installed."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        return signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # e.g. an embedded interpreter without signals
        return None


#: the Hydra launcher plugins of ``pyproject.toml``'s optional extras: ``hydra/launcher`` name →
#: (the plugin's module, the extra that installs it)
LAUNCHER_EXTRAS = {
    "submitit_local": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "submitit_slurm": ("hydra_plugins.hydra_submitit_launcher", "slurm"),
    "ray": ("hydra_plugins.hydra_ray_launcher", "ray"),
}


#: Hydra's flags that take the next argument as their value (``--info`` may take one).
_FLAGS_WITH_VALUES = ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd",
                      "--cfg", "-c", "--package", "-p", "--info", "-i", "--experimental-rerun")  # fmt: skip


def check_bare_words(app: str, argv: list[str], commands: tuple[str, ...] = ()) -> None:
    """Exit with one line (status 2) for an argument that is neither ``key=value``, a deletion
    (``~key``), a flag, a flag's value nor one of the app's ``commands`` (``v2x-sweep lst``: Hydra's "missing
    EQUAL at '<EOF>'" named neither the word nor the command meant)."""
    for i, arg in enumerate(argv):
        after_flag = i > 0 and argv[i - 1] in _FLAGS_WITH_VALUES
        if "=" in arg or arg.startswith(("-", "~")) or after_flag or arg in commands:
            continue
        what = f"; the command is {app} {' | '.join(commands)}" if commands else ""
        print(f"error: {app}: '{arg}' is not an override; expected key=value{what}",
              file=sys.stderr)  # fmt: skip
        raise SystemExit(2)


def check_launcher(argv: list[str]) -> None:
    """Exit with one line (status 2) when ``argv`` asks for a launcher of an optional extra
    that is not installed: Hydra said only "Unknown plugin class", in a traceback."""
    import importlib.util

    for arg in argv:
        name = arg.split("=", 1)[1] if arg.startswith("hydra/launcher=") else None
        if name not in LAUNCHER_EXTRAS:
            continue
        module, extra = LAUNCHER_EXTRAS[name]
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # no hydra_plugins namespace at all
            found = False
        if not found:
            print(
                f"error: hydra/launcher={name} needs its Hydra plugin, which is not installed; "
                f"expected pip install 'v2x[{extra}]' (README, \"Scaling out\")",
                file=sys.stderr,
            )
            raise SystemExit(2)


def check_override_keys(app: str, config_name: str, argv: list[str]) -> None:
    """Exit with one line (status 2) when an override in ``argv`` sets a key that the app's
    config (``config_name``, or the one ``--config-name`` / ``-cn`` picks) does not have.

    Hydra says so in five to ten lines that list no valid key; this names the key, the
    nearest fields where it was meant to go and the ``+key=…`` form that adds a new one.
    Nothing is said when Hydra takes every override. Overrides Hydra handles itself
    (``+``/``++``/``~`` prefixes, ``hydra…``, group paths with ``/``, flags) are left to it;
    keys are looked up in the config with the command line's group choices (``model=…``), and
    nothing is checked when ``--config-dir`` / ``--config-path`` adds the user's own configs.
    """
    import difflib
    import re

    if any(a.split("=", 1)[0] in ("--config-dir", "-cd", "--config-path", "-cp") for a in argv):
        return  # configs of the user's own folder: only Hydra knows them
    name, keys, given = config_name, [], []
    for i, arg in enumerate(argv):
        if arg in ("--config-name", "-cn") and i + 1 < len(argv):
            name = argv[i + 1]
        elif arg.startswith("--config-name="):
            name = arg.split("=", 1)[1]
        key = arg.split("=", 1)[0] if "=" in arg and not arg.startswith("-") else ""
        if key and not key.lstrip("+~").startswith("hydra"):
            given.append(arg)
        if re.fullmatch(r"[A-Za-z_][\w.\-]*", key) and not key.startswith("hydra"):
            keys.append(key)
    if not keys:
        return
    try:
        from hydra import compose, initialize_config_module
        from omegaconf import OmegaConf

        def tree(overrides: list[str]) -> Any:
            return OmegaConf.to_container(compose(name, overrides=overrides), resolve=False)

        with initialize_config_module(config_module="v2x.conf", version_base=None):
            with contextlib.suppress(Exception):
                tree(given)
                return  # Hydra takes them all (multirun values such as a=1,2 it takes later)
            if unknown := _unknown_group_choice(name, given):
                print(f"error: {app}: {unknown}", file=sys.stderr)
                raise SystemExit(2)
            config = tree([])
            chosen = [a for a in given if isinstance(config.get(a.split("=", 1)[0]), dict)]
            with contextlib.suppress(Exception):  # the command line's groups (model=pointpillars
                config = tree(chosen)  # has layer_nums, the default small model has not)
    except Exception:  # (a bad config name or group: Hydra's own message says which)
        return
    for key in keys:
        node, parts = config, key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict):
                break  # inside a value (a list, null): Hydra decides
            if part not in node:
                if depth == 0 and (unread := _unread_group(app, name, part, config)):
                    print(f"error: {app}: {unread}", file=sys.stderr)
                    raise SystemExit(2)
                where = ".".join(parts[:depth])
                near = difflib.get_close_matches(part, [str(k) for k in node], n=3, cutoff=0.6)
                open_sections = _sections_taking_new_keys(config)
                print(
                    f"error: {app}: field '{key}' is not a setting ('{part}' is not a field of "
                    f"{repr(where) if where else 'the config'}"
                    + (f"; did you mean {', '.join(repr(n) for n in near)}?" if near else "")
                    + "); expected a field of the config"
                    + (
                        f"; a section that takes new keys ({', '.join(open_sections)}) takes "
                        f"+{key}=… to add one"
                        if open_sections
                        else ""
                    ),
                    file=sys.stderr,
                )
                raise SystemExit(2)
            node = node[part]


def _composed_groups(config_name: str) -> list[str]:
    """The config groups the app's config composes (``model``, ``dataset``; Hydra's own left
    out), inside ``initialize_config_module``."""
    from hydra import compose

    choices = compose(config_name, return_hydra_config=True).hydra.runtime.choices
    return [g for g in choices if not g.startswith("hydra/")]


def _unknown_group_choice(config_name: str, given: list[str]) -> str | None:
    """The message for ``group=value`` where ``group`` is a config group the app composes
    (``model``, ``dataset``) and ``value`` none of its options; ``None`` when there is none."""
    from importlib.resources import files

    groups = _composed_groups(config_name)
    for arg in given:
        key, value = arg.split("=", 1)
        folder = files("v2x.conf") / key
        if key not in groups or not folder.is_dir() or "," in value:
            continue
        options = sorted(f.name[: -len(".yaml")] for f in folder.iterdir()
                         if f.name.endswith(".yaml"))  # fmt: skip
        if value not in options:
            return (
                f"field '{key}' is {value!r}, not an option of its config group (conf/{key}); "
                f"valid choices: {', '.join(options)}"
            )
    return None


#: Where a sweep or a training run takes what a config group it does not read would choose:
#: group -> the settings that do (those the app's config has are named)
GROUP_SETTINGS = {
    "channel": ("grid.channels", "codec_train.channels", "calibrate.channels"),
    "codec": ("grid.codecs",),
    "link": ("network.link_models",),
    "dataset": ("data.source",),
}


def _unread_group(app: str, config_name: str, key: str, config: dict) -> str | None:
    """The message for ``key=…`` where ``key`` is one of ``v2x/conf``'s config groups that the
    app's config does not compose (``v2x-train channel=rayleigh``): the groups it does read
    and the settings that take the choice instead; ``None`` when ``key`` is no group."""
    from importlib.resources import files

    if not (files("v2x.conf") / key).is_dir() or key in ("hydra", "__pycache__"):
        return None
    from hydra import initialize_config_module

    with initialize_config_module(config_module="v2x.conf", version_base=None):
        groups = _composed_groups(config_name)
    instead = []
    for setting in GROUP_SETTINGS.get(key, ()):
        node: Any = config
        for part in setting.split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        if node is not KeyError:
            instead.append(setting)
    return (
        f"'{key}' is a config group (conf/{key}) that {app} does not read; expected "
        + (f"one of its groups ({', '.join(groups)}) or " if groups else "")
        + "a field of its config"
        + (f"; {key} choices go in {', '.join(instead)}" if instead else "")
    )


#: The sections of the apps' configs whose keys are the user's (kwargs of a named part): a key
#: they lack is added with ``+key=…``.
SECTIONS_TAKING_NEW_KEYS = ("channel_options", "codec_options", "data.reader")


def _sections_taking_new_keys(config: dict) -> list[str]:
    """Those of ``SECTIONS_TAKING_NEW_KEYS`` that ``config`` has (v2x-plot's has none)."""
    found = []
    for section in SECTIONS_TAKING_NEW_KEYS:
        node: Any = config
        for part in section.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            found.append(section)
    return found


def check_lists(app: str, section: str, data: dict, names: tuple[str, ...],
                nullable: tuple[str, ...] = ()) -> None:
    """``ValueError`` when a field of ``names`` in ``data`` (the config section ``section``) is
    not a list: ``train.modes=max`` on the command line is the string ``'max'``, which code that
    iterates it takes letter by letter (``entry 'm' is unknown``, ``trainable=p`` trained every
    weight starting with p) and a number fails as ``'float' object is not iterable``. Fields
    absent from ``data``, and ``None`` for those of ``nullable``, pass. The message names
    ``<app>: field '<section>.<name>'``, the value and the bracketed form, e.g.
    ``train.modes=[max]``."""
    for name in names:
        if name not in data or isinstance(data[name], list | tuple):
            continue
        value = data[name]
        if value is None and name in nullable:
            continue
        scalar = isinstance(value, str | int | float) and not isinstance(value, bool)
        raise ValueError(
            f"{app}: field '{section}.{name}' is {'null' if value is None else repr(value)}; "
            "expected a list, e.g. "
            f"{section}.{name}=[{value if scalar else '…'}]"
        )


def app_description(config_name: str) -> str:
    """What an app does and example command lines: the comment block that opens its config
    (``v2x/conf/<config_name>.yaml``), without the ``# ``; ``--help`` prints it first."""
    from importlib.resources import files

    text = (files("v2x.conf") / f"{config_name}.yaml").read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[2:] if line.startswith("# ") else line[1:])
    return "\n".join(lines)


def checks_override_keys(app: str, config_name: str) -> Callable[[F], F]:
    """Decorator for an app's ``@hydra.main`` entry point: ``check_override_keys`` on the
    command line before Hydra composes it (when called without arguments, as the console
    script is); with ``--help``, the app's description (``app_description``) before Hydra's
    help (its config groups and composed config)."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def entry(*args: Any, **kwargs: Any) -> Any:
            if not args and not kwargs:
                if {"--help", "-h"} & set(sys.argv[1:]):
                    print(app_description(config_name) + "\n")
                check_override_keys(app, config_name, sys.argv[1:])
            return fn(*args, **kwargs)

        return entry  # type: ignore[return-value]

    return wrap


#: Exit status when stdout's reader went away (``v2x-link | head -3``): 128 + SIGPIPE, what a
#: shell reports for a program that SIGPIPE killed.
BROKEN_PIPE_STATUS = 141


def _exit_on_broken_pipe() -> NoReturn:
    """Exit quietly when stdout's reader has gone: point stdout at devnull, so that the
    interpreter's last flush of what is still buffered does not fail again, and exit with
    ``BROKEN_PIPE_STATUS`` without a traceback (the Python docs' advice on SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(BROKEN_PIPE_STATUS)


@contextlib.contextmanager
def errors_named(app: str, job: str = "sweep"):  # noqa: ANN201 - a context manager
    """Errors of the ``job`` an ``app`` runs, named by the app (``v2x-eval`` runs a sweep): a
    message that starts ``"<job>:"`` starts ``"<app>:"`` instead; the same exception, its type
    (and so ``user_errors``' exit status) and traceback kept."""
    try:
        yield
    except Exception as exc:
        first = exc.args[0] if exc.args else None
        if isinstance(first, str) and first.startswith(f"{job}:"):
            exc.args = (f"{app}:{first[len(job) + 1:]}", *exc.args[1:])
        raise


def user_errors(fn: F) -> F:
    """Wrap an app's main function: user errors, a lack of memory, Ctrl-C and ``SIGTERM`` become
    one line and an exit status (2, 3, 130, 143); output into a closed pipe (``| head``) exits
    quietly with status 141."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        reuse_freed_memory()
        previous = _interrupt_on_sigterm()
        try:
            result = fn(*args, **kwargs)
            sys.stdout.flush()  # a reader that went away shows here, not at the exit's flush
            return result
        except BrokenPipeError:
            _exit_on_broken_pipe()
        except KeyboardInterrupt as exc:
            if traceback_wanted():
                raise
            print(str(exc) or "interrupted (nothing to save yet)", file=sys.stderr)
            sys.exit(143 if _terminated(exc) else 130)
        except (ValueError, FileNotFoundError, OutOfResources) as exc:
            if traceback_wanted():
                raise
            print(f"error: {exc} (set {TRACEBACK_ENV}=1 for the traceback)", file=sys.stderr)
            sys.exit(3 if isinstance(exc, OutOfResources) else 2)
        except OSError as exc:  # a path the file system refused, named by the error
            if traceback_wanted() or exc.filename is None:
                raise
            print(f"error: {exc} (set {TRACEBACK_ENV}=1 for the traceback)", file=sys.stderr)
            sys.exit(2)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]
