"""The ``iapo`` command line: every command is registered by its module's ``register_cli``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from iapo import bank, bench, commands, distributed, record, report
from iapo.errors import InputError, PermanentBackendError, StorageError, TransientBackendError
from iapo.version import __version__

__all__ = ["HelpFormatter", "build_parser", "main", "walk_parsers"]

#: The modules whose ``register_cli(subparsers)`` add commands, in the order of ``iapo --help``.
REGISTRARS: tuple[Callable[[Any], None], ...] = (
    commands.register_cli,
    bench.register_cli,
    record.register_cli,
    report.register_cli,
    bank.register_cli,
    distributed.register_cli,
)


class HelpFormatter(argparse.HelpFormatter):
    """Appends an option's default to its help, when it has one worth saying (not None, not a
    flag's False) and the help does not state it already."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or "default" in text
        ):
            return text
        return f"{text} (default: %(default)s)"


def walk_parsers(
    parser: argparse.ArgumentParser,
) -> Iterator[tuple[argparse.ArgumentParser, argparse.Action]]:
    """Every (parser, argument) of ``parser`` and of its sub-commands, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases name one parser twice
                yield from walk_parsers(sub)
        else:
            yield parser, action


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="iapo",
        description="Inference-aware prompt optimisation: choose (prompt, N) "
        "per user preference under a budget of LLM completions (PSST).",
        formatter_class=HelpFormatter,
    )
    ap.add_argument("--version", action="version", version=f"iapo {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    for register in REGISTRARS:
        register(sub)
    for parser, _ in walk_parsers(ap):
        parser.formatter_class = HelpFormatter
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc: int = args.func(args)
        return rc
    except InputError as exc:
        print(f"iapo: error: {exc}", file=sys.stderr)
        return 2
    except PermanentBackendError as exc:  # a wrong key, model or request: fix the config
        print(f"iapo: error: {exc}", file=sys.stderr)
        return 2
    except TransientBackendError as exc:
        print(
            f"iapo: error: the endpoint kept failing ({exc}); every completion drawn so far is "
            "in the bank: run the same command again to resume",
            file=sys.stderr,
        )
        return 1
    except StorageError as exc:  # disk full, I/O error, a lock held too long: not the input
        print(f"iapo: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
