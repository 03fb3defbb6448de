"""The ``bot`` command line."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, NoReturn


def stop_while_starting(signum: int, _frame: Any) -> NoReturn:
    """`bot serve`'s SIGTERM, SIGHUP and SIGINT until the server's own handlers take over (the imports, the model's
    load): stop with 128 + the signal's number, and say so. It stopped without a word, and a server killed again and
    again as it started (a health check or `docker stop` that waited less than its start) left an empty log."""
    why = "" if signum == signal.SIGINT else (" (a health check or a stop that waited less than its start, which loads "
                                              "the model?)")
    said = f"deskbot stopped by {signal.Signals(signum).name} while starting, before it served{why}\n"
    os.write(2, said.encode())  # not through sys.stderr, which the interrupted code may be writing to
    sys.exit(128 + signum)


def stop_on_signals_while_starting() -> None:
    """SIGTERM stops the start-up too (the imports, the model's load), before the server's own handler takes
    over: as a container's first process, which the system gives no default action, a `docker stop` then went
    unheard and waited out its 10 s, the server starting to serve meanwhile, before its SIGKILL. So do SIGHUP and
    SIGINT (Ctrl-C), as they do once serving: Ctrl-C printed a page of traceback from wherever the imports were, or
    click's "Aborted!" with status 1, which a script took for a failure."""
    for stop in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(stop, stop_while_starting)


# Before the other imports: `bot serve` spends seconds importing deskbot before `serve` itself runs.
if sys.argv[1:2] == ["serve"]:
    stop_on_signals_while_starting()

from bot.cli import bench, data, init, models, review, serve  # noqa: E402,F401  (each adds its commands to `cli`)
from bot.cli.common import cli  # noqa: E402

__all__ = ["cli", "stop_while_starting"]
