"""What every console script shares: the entry wrapper (package errors, Ctrl-C, logging), argparse types, bars."""

from __future__ import annotations

import argparse
import functools
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..core.errors import BlockfsError

if TYPE_CHECKING:  # imported where used: a console script starts without them
    from tqdm import tqdm

logger = logging.getLogger("blockfs_tasks")

Main = Callable[[Sequence[str] | None], int]

EXIT_INTERRUPTED = 130


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (worker counts, batch sizes, bytes per read)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0-65535 (0: any free port)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, got {text!r}")
    return value


def _entry(
    parser_factory: Callable[[], argparse.ArgumentParser], resumable: bool = True
) -> Callable[[Callable[[argparse.Namespace], int]], Main]:
    """Wrap a subcommand: parse argv, set up logging, turn package errors into exit 1.

    Ctrl-C prints one line (with "rerun the same command to resume" when
    ``resumable``) and returns :data:`EXIT_INTERRUPTED`, no traceback.
    """

    def wrap(run: Callable[[argparse.Namespace], int]) -> Main:
        @functools.wraps(run)
        def main(argv: Sequence[str] | None = None) -> int:
            parser = parser_factory()
            parser.add_argument("--log-level", default="WARNING", help="Logging level (default: WARNING).")
            args = parser.parse_args(argv)
            logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
            try:
                if getattr(args, "storage_options", None):
                    from .storage import apply_storage_options

                    apply_storage_options(args)
                return run(args)
            except (BlockfsError, OSError) as e:
                print(f"{parser.prog}: error: {e}", file=sys.stderr)
                return 1
            except KeyboardInterrupt:
                hint = "; rerun the same command to resume" if resumable else ""
                print(f"{parser.prog}: interrupted{hint}", file=sys.stderr)
                return EXIT_INTERRUPTED

        return main

    return wrap



def _progress(total: int | None, silent: bool, unit: str) -> tqdm:
    """A tqdm bar (or a silent stand-in with the same ``update``/``close``)."""
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, disable=silent, file=sys.stderr)



def _bar_callback(bar: tqdm, per_unit: int = 1) -> Callable[[int, int], None]:
    """An exporter's ``progress(done, total)`` shown on ``bar`` in units of ``per_unit`` (e.g. rows per plane)."""

    def update(done: int, total: int) -> None:
        if bar.total != total // per_unit:
            bar.total = total // per_unit
            bar.refresh()
        if done < total:
            bar.update(done // per_unit - bar.n)
        else:
            bar.n = done // per_unit  # shown once, by close(): an update here would print the final bar twice

    return update

