"""A quiet terminal: one tinyeval display per command, every third-party line in a log file.

vLLM (and the engine processes it spawns), lm-eval, transformers, datasets and tqdm write INFO lines, warnings
and progress bars straight to the process's stdout and stderr. `into(log)` points file descriptors 1 and 2 at
`log` for the duration of the block, so child processes inherit the log too, and keeps tinyeval's two rich
consoles writing where they wrote before (the terminal, or a test runner's buffer). `verbose=True` leaves
everything on the terminal. `status(text)` is the spinner a command shows meanwhile.

    with quiet.into(out / "log.txt", verbose), quiet.status("evaluating"):
        record = evaluate(cfg)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console, RenderableType
from rich.live import Live
from rich.spinner import Spinner

from tinyeval.console import console, err_console

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show third-party output (vLLM, lm-eval, transformers, "
                                       "progress bars) instead of writing it to log.txt.")]


def _fd_of(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # a test runner's buffer, a closed file
        return None


@contextmanager
def _redirected(fd: int, sink: int) -> Iterator[int]:
    """Point `fd` at `sink`; yields a duplicate of the old `fd`; restores it on exit."""
    saved = os.dup(fd)
    try:
        os.dup2(sink, fd)
        yield saved
    finally:
        os.dup2(saved, fd)
        os.close(saved)


@contextmanager
def _keep_on_terminal(con: Console, fd: int, saved: int) -> Iterator[None]:
    """Pin `con` to where it writes now: a console on `fd` gets a stream on the saved duplicate of `fd`, any other
    (a test runner's buffer) keeps its stream even when `sys.stdout` is swapped."""
    previous = con._file  # the console's own choice (None: follow sys.stdout / sys.stderr)
    target = con.file
    stream = os.fdopen(os.dup(saved), "w", encoding="utf-8", errors="replace", buffering=1) \
        if _fd_of(target) == fd else None
    con.file = stream or target
    try:
        yield
    finally:
        con.file = previous
        if stream is not None:
            stream.close()


@contextmanager
def _python_streams(sys_name: str, fd: int) -> Iterator[None]:
    """`sys.stdout` / `sys.stderr` that are no file descriptor (a test runner's buffer) write to `fd` meanwhile.

    The stand-in is never closed: a logging handler created inside the block keeps it, and after the block it
    writes to the restored descriptor instead of failing on a closed file."""
    original = getattr(sys, sys_name)
    if _fd_of(original) == fd:
        yield
        return
    setattr(sys, sys_name, open(fd, "w", encoding="utf-8", errors="replace", buffering=1, closefd=False))
    try:
        yield
    finally:
        getattr(sys, sys_name).flush()
        setattr(sys, sys_name, original)


@contextmanager
def into(log: Path, verbose: bool = False) -> Iterator[None]:
    """Send this process's and its children's stdout and stderr to `log` (appended) while the block runs."""
    if verbose:
        yield
        return
    new_dir, new_log = not log.parent.exists(), not log.exists()
    log.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr, console.file, err_console.file):
        stream.flush()
    sink = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        with ExitStack() as stack:
            for fd, sys_name, con in ((1, "stdout", console), (2, "stderr", err_console)):
                saved = stack.enter_context(_redirected(fd, sink))
                stack.enter_context(_keep_on_terminal(con, fd, saved))
                stack.enter_context(_python_streams(sys_name, fd))
            yield
            sys.stdout.flush(), sys.stderr.flush()
    finally:
        os.close(sink)
        if new_log and log.stat().st_size == 0:  # a command refused before anything ran leaves nothing behind
            log.unlink()
            if new_dir and not any(log.parent.iterdir()):
                log.parent.rmdir()


@contextmanager
def live(render, enabled: bool = True, con: Console = console) -> Iterator[Live | None]:
    """A live display of `render()` (refreshed twice a second); nothing when disabled (JSON output).

    It never takes over `sys.stdout`: inside `into` that is the log, and rich's redirect would put the third-party
    lines back on the terminal."""
    if not enabled:
        yield None
        return
    with Live(get_renderable=render, console=con, refresh_per_second=2, transient=False,
              redirect_stdout=False, redirect_stderr=False) as display:
        yield display


@contextmanager
def status(text: str, enabled: bool = True, con: Console = console) -> Iterator[None]:
    """A spinner with `text` while the block runs (gone afterwards)."""
    spinner: RenderableType = Spinner("dots", text=text)
    if not enabled:
        yield
        return
    with Live(spinner, console=con, refresh_per_second=8, transient=True, redirect_stdout=False,
              redirect_stderr=False):
        yield
