"""
Manage the edge's RS256 signing keys in C{<data-dir>/keys/}::

    python -m netbore.auth.keys list   --data-dir DIR
    python -m netbore.auth.keys rotate --data-dir DIR
    python -m netbore.auth.keys retire --data-dir DIR KID

C{rotate} adds a key that signs from the edge's next start; tokens signed by
the older keys keep verifying until those keys are retired.  C{retire}
deletes a key and refuses to delete the last one.  The edge reads its keys
at start-up: restart it after a change.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TextIO

from .keystore import KeyFile, KeyringError, generate_key, read_keys, retire_key

__all__ = ["main"]


def _created(key: KeyFile) -> str:
    if not key.created_ns:
        return "unknown"
    when = datetime.fromtimestamp(key.created_ns / 1e9, tz=timezone.utc)
    return when.isoformat(timespec="seconds")


def _list(args: argparse.Namespace, out: TextIO) -> None:
    keys = read_keys(args.data_dir)
    if not keys:
        print(f"no keys in {args.data_dir}", file=out)
    for key in keys:
        role = "signing" if key is keys[-1] else "verifying"
        print(f"{key.kid}  {_created(key)}  {role}", file=out)


def _rotate(args: argparse.Namespace, out: TextIO) -> None:
    key = generate_key(args.data_dir)
    print(f"{key.kid}  {_created(key)}  signing (new)", file=out)


def _retire(args: argparse.Namespace, out: TextIO) -> None:
    key = retire_key(args.data_dir, args.kid)
    print(f"retired {key.kid}", file=out)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m netbore.auth.keys",
        description="Manage netbore's RS256 signing keys.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler, text in [
        ("list", _list, "list the keys, oldest first"),
        ("rotate", _rotate, "add a new signing key"),
        ("retire", _retire, "delete a key (never the last one)"),
    ]:
        command = commands.add_parser(name, help=text)
        command.add_argument("--data-dir", required=True, help="the edge's --data-dir")
        command.set_defaults(handler=handler)
        if name == "retire":
            command.add_argument("kid", help="the kid of the key to retire")
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """
    Run the command in C{argv}; 0 on success, 1 (with a message on stderr)
    when the keys cannot be read or changed.
    """
    args = _parser().parse_args(argv)
    try:
        args.handler(args, out if out is not None else sys.stdout)
    except KeyringError as e:
        print(f"netbore.auth.keys: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
