"""Argument parsing for `align-lens`: one-line errors, checked value types, and defaults read from the library.

Every default shown by `--help` is read from the config dataclass or function signature that the command
calls (`option(parser, AlignConfig, "epochs", ...)`), so each default lives in one place: the library.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, NoReturn, cast

import torch


class UsageError(ValueError):
    """A command-line mistake; the message names the option and the fix (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the fix, with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


class Given(argparse.Action):
    """Store the value and record its dest in `namespace.given`, so that a preset (`--quick`) fills in only the
    options the user did not give."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, values)
        namespace.given = {*getattr(namespace, "given", ()), self.dest}


# ---- defaults from the library ------------------------------------------------------------------
def default_of(source: type | Callable, name: str) -> Any:
    """Default of field `name` (dotted for nested configs, e.g. "align.epochs") of a dataclass, or of
    parameter `name` of a function."""
    if dataclasses.is_dataclass(source) and isinstance(source, type):
        head, *rest = name.split(".")
        found = {f.name: f for f in dataclasses.fields(source)}[head]
        if found.default is not dataclasses.MISSING:
            value = found.default
        elif found.default_factory is not dataclasses.MISSING:
            value = found.default_factory()
        else:
            raise KeyError(f"{source.__name__}({head}=...) has no default")
        for part in rest:
            value = getattr(value, part)
        return value
    param = inspect.signature(cast(Callable, source)).parameters[name]
    if param.default is inspect.Parameter.empty:
        raise KeyError(f"{getattr(source, '__name__', source)}({name}=...) has no default")
    return param.default


def flag_dest(flag: str) -> str:
    """The attribute argparse stores `--flag-name` under (flag_name)."""
    return flag.removeprefix("--").replace("-", "_")


def option(
    parser: argparse.ArgumentParser,
    source: type | Callable,
    name: str,
    type: Callable[[str], Any] | None = None,
    help: str = "",
    flag: str | None = None,
    dest: str | None = None,
    **kwargs: Any,
) -> None:
    """Add `--name` (or `flag`) with its default taken from `source` (see `default_of`); dest defaults to the
    last part of `name`, so the parsed value can be passed straight back to `source`."""
    default = default_of(source, name)
    dest = dest or name.rsplit(".", 1)[-1]
    flag = flag or "--" + dest.replace("_", "-")
    if type is None and default is not None and not isinstance(default, bool):
        type = builtin_type(default)
    if type is not None:
        kwargs["type"] = type
    parser.add_argument(flag, dest=dest, default=default, help=f"{help} (default: {default})".strip(), **kwargs)


def builtin_type(default: Any) -> Callable[[str], Any]:
    """The checked parser for a default's type: ints ≥ 0, finite floats ≥ 0, or str."""
    if isinstance(default, int):
        return non_negative_int
    if isinstance(default, float):
        return non_negative_float
    return str


# ---- value types (argparse turns ArgumentTypeError into a one-line usage error) ----------------------
def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def _at_least(parse, low: float, strict: bool, need: str):
    """An argparse type: `parse(text)`, then a one-line error unless the value is > low (strict) or ≥ low."""

    def check(text: str):
        value = parse(text)
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"must be {need}, got {text.strip()}")
        return value

    return check


positive_int = _at_least(_int, 1, False, "a positive integer")
non_negative_int = _at_least(_int, 0, False, "an integer ≥ 0")
positive_float = _at_least(_float, 0.0, True, "a number > 0")
non_negative_float = _at_least(_float, 0.0, False, "a number ≥ 0")


def device(text: str) -> str:
    """A torch device that exists on this machine: cpu, cuda, cuda:N or mps (parsed by `torch.device`, checked
    before any work), in torch's spelling ("cpu:0" → "cpu")."""
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"{text!r} but CUDA is not available on this machine (torch {torch.__version__}); use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text!r} but this machine has {torch.cuda.device_count()} CUDA device(s); use cuda:0 … "
                f"cuda:{torch.cuda.device_count() - 1}"
            )
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text!r} but MPS is not available on this machine; use --device cpu")
    elif dev.type != "cpu":
        raise argparse.ArgumentTypeError(f"unsupported device {text!r}; use cpu, cuda, cuda:N or mps")
    elif dev.index:
        raise argparse.ArgumentTypeError(f"{text!r} but the CPU has no device index; use --device cpu")
    return "cpu" if dev.type == "cpu" else str(dev)


def common_options() -> argparse.ArgumentParser:
    """Options every sub-command takes: --device and --debug."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:N or mps (default: cpu)")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return p
