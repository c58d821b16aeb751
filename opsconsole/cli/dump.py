"""``opsconsole dump URL WHAT``: fetch a dump and print it (readable text by default) or save it.

Runs in the operator's process. The server renders text (one renderer for the API, the CLI
and the REPL), so this module only maps WHAT to a route and moves bytes.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from opsconsole.errors import ClientError

if TYPE_CHECKING:
    from opsconsole.cli.client import Client

# WHAT → (method, path). Text-capable routes take ?format=text.
ROUTES: dict[str, tuple[str, str]] = {
    "threads": ("GET", "/ops/threads"),
    "gc": ("GET", "/ops/gc"),
    "process": ("GET", "/ops/process"),
    "objects": ("GET", "/ops/objects"),
    "baseline": ("POST", "/ops/objects/baseline"),
    "growth": ("GET", "/ops/objects/growth"),
    "refchain": ("GET", "/ops/objects/refchain"),
    "heap": ("GET", "/ops/heap"),
    "diff": ("GET", "/ops/heap/diff"),
    "snapshots": ("GET", "/ops/heap/snapshots"),
    "snapshot": ("GET", "/ops/heap/snapshots/"),
    "profile": ("GET", "/ops/profile"),
    "leaks": ("GET", "/ops/leaks"),
    "heapsnapshot": ("GET", "/ops/heapsnapshot"),
}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("dump", help="fetch a dump: " + ", ".join(ROUTES))
    p.add_argument("url")
    p.add_argument("what", choices=sorted(ROUTES))
    p.add_argument("-o", "--output", type=Path, help="write to FILE instead of printing")
    p.add_argument("--format", default="text", help="text (default) or json; profile: collapsed, speedscope")
    p.add_argument("--name", help="snapshot or baseline name")
    p.add_argument("--since", help="growth: compare with this baseline")
    p.add_argument("--type", help="refchain: qualified type name, e.g. myapp.models.Order")
    p.add_argument("--base", help="diff: base snapshot")
    p.add_argument("--other", help="diff: other snapshot (default: now)")
    p.add_argument("--key", choices=["lineno", "traceback"], help="diff: group by")
    p.add_argument("--top", type=int, help="how many rows")
    p.add_argument("--seconds", type=float, help="profile: how long to sample")
    p.add_argument(
        "--contents",
        choices=["redacted", "full"],
        help="heapsnapshot: full puts str/bytes contents in the file (secrets; audited)",
    )
    return p


def query_for(args: argparse.Namespace) -> dict[str, str]:
    params = {
        "name": args.name,
        "since": args.since,
        "type": args.type,
        "base": args.base,
        "other": args.other,
        "key": args.key,
        "top": None if args.top is None else str(args.top),
        "seconds": None if args.seconds is None else str(args.seconds),
    }
    if args.what != "snapshot":
        params["format"] = args.format
    return {k: v for k, v in params.items() if v is not None}


def check(args: argparse.Namespace) -> None:
    """Refuse, before any request, what the server would refuse less clearly."""
    if args.what == "snapshot" and not args.name:
        raise ClientError("dump snapshot needs --name NAME (see: opsconsole dump URL snapshots)")
    if args.what == "diff" and not args.base:
        raise ClientError(
            "dump diff needs --base NAME, the snapshot to compare from (see: opsconsole dump URL snapshots)"
        )


def run(client: Client, args: argparse.Namespace) -> int:
    method, path = ROUTES[args.what]
    if args.what == "snapshot":
        dest = args.output or Path(f"{args.name}.tracemalloc")
        return _save(client, path + urllib.parse.quote(args.name, safe=""), dest)
    if args.what == "heapsnapshot":  # streamed to the file; open it in Chrome DevTools (Memory → Load)
        dest = args.output or Path("opsconsole.heapsnapshot")
        query = f"?contents={args.contents}" if args.contents else ""
        return _save(client, path + query, dest)
    query = urllib.parse.urlencode(query_for(args))
    body = client.fetch(method, f"{path}?{query}" if query else path, {} if method == "POST" else None)
    if args.output is not None:
        args.output.write_bytes(body)
        print(f"saved {len(body)} bytes to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(body.decode("utf-8", "replace"))
        if not body.endswith(b"\n"):
            sys.stdout.write("\n")
    return 0


def _save(client: Client, path: str, dest: Path) -> int:
    """Stream ``path`` into ``dest``. The ``\\r`` progress line is drawn only on a terminal: in a
    log (stderr a pipe or a file) it would make one endless line."""
    tty = sys.stderr.isatty()
    size = client.download(path, dest, _progress if tty else _quiet)
    print(("\n" if tty else "") + f"saved {size} bytes to {dest}", file=sys.stderr)
    return 0


def _quiet(done: int, total: int | None) -> None:
    pass


def _progress(done: int, total: int | None) -> None:
    if total:
        print(f"\r{done / total:6.1%}  {done >> 10} / {total >> 10} KiB", end="", file=sys.stderr, flush=True)
    else:
        print(f"\r{done >> 10} KiB", end="", file=sys.stderr, flush=True)
