"""The ``geodino`` command: one front door per job, each a thin layer over a library API.

Every sub-command lives in its own module here and exposes ``register(subparsers)``, which adds
its parser and sets ``func`` to the function that runs it. Heavy imports happen inside those
functions so that ``geodino --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from geodino.utils import one_line

# Order is the order shown by ``geodino --help``.
COMMANDS = ["pretrain", "shard", "stats", "inspect", "bench", "eval", "finetune", "export", "attention", "plot",
            "compare", "doctor", "recipes"]


class CommandError(Exception):
    """An error the user can fix; printed as one line, without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geodino",
        description="DINO self-supervised pretraining of Vision Transformers for Earth observation.",
    )
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of its one-line message "
                             "(also GEODINO_DEBUG=1)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"geodino.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from geodino.runs.stop import EXIT_STOPPED, RunStopped, TrainingDiverged

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse ends a list of positionals at the first option: `pretrain quickstart --out x
    # model.depth=2` leaves `model.depth=2` over. Commands that take recipe items (set_defaults
    # trailing_items=<their dest>) get such leftovers back; anything else stays an error.
    trailing = getattr(args, "trailing_items", None)
    if extra and trailing and not any(e.startswith("-") for e in extra):
        setattr(args, trailing, [*getattr(args, trailing), *extra])
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        result = args.func(args)
    except RunStopped as stopped:  # preemption (pretrain, bench pays): not an error, not finished either
        print(f"geodino: {stopped}", file=sys.stderr, flush=True)
        return EXIT_STOPPED
    # OSError: files, disks, remote shards; TrainingDiverged: settings (a learning rate) or data (NaN bands)
    except (CommandError, ValueError, OSError, KeyError, TrainingDiverged) as err:
        if _debug(args):
            raise
        print(f"geodino {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - what no check foresaw still ends in one line, and says so
        if _debug(args):
            raise
        print(f"geodino {args.command}: error: {type(err).__name__}: {one_line(err)} (an unexpected failure: "
              "--debug shows where; please report it)", file=sys.stderr)
        return 1
    return int(result or 0)


def _debug(args: argparse.Namespace) -> bool:
    return bool(args.debug or getattr(args, "traceback", False) or os.environ.get("GEODINO_DEBUG") == "1")


if __name__ == "__main__":
    sys.exit(main())
