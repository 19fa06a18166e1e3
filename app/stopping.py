"""Ctrl-C that always ends a command, even when Python drops it or a library's clean-up hangs.

Why: Python turns Ctrl-C into a KeyboardInterrupt, and the command's own handler then says what
was kept. Two things can keep that from happening. A KeyboardInterrupt raised inside a garbage
collector's or a weak reference's callback is printed as "Exception ignored" and dropped, so the
command goes on as if no Ctrl-C had come: this held `tandem train` for over two minutes on CI
(December 2026). And the stop runs other code first (LangGraph waits for a step's background
threads, joblib replaces the worker pool it aborted, the interpreter joins threads at exit), any
of which may hang. A user must not have to find the process and kill it, so in both cases the
process ends; what the command keeps is written atomically (the policy file) before any stop can
begin, so nothing is lost. A second Ctrl-C ends it at once, as users expect.

A signal sent to the command's process alone (`kill -INT`, or SIGTERM from `kill`, a scheduler or
a container's stop) reaches neither its worker processes, as a terminal's Ctrl-C does, nor, under
SIGTERM's default, any clean-up at all: a run waited for its workers' folds for minutes, or left
them fitting with nobody to take the result. `signals_stop_the_command` makes both stop it as a
terminal's Ctrl-C does.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

from tandem.tools.stop_request import clear_stop_request, request_stop

#: A command stopped by SIGTERM exits with this code, as a shell reports a process SIGTERM ended.
EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be, so it takes the same way out and
    the command says what is saved."""


@contextmanager
def signals_stop_the_command() -> Iterator[None]:
    """Inside the block, SIGINT and SIGTERM stop the command as a terminal's Ctrl-C does: the fits
    running in this process are asked to stop (`tools/stop_request.py`), its child processes (the
    fold workers) get SIGINT, and the main thread gets KeyboardInterrupt (`Terminated` for
    SIGTERM). Outside the main thread (a notebook's worker, where no handler can be set) it does
    nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        request_stop()
        _interrupt_children()
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        clear_stop_request()


def _interrupt_children() -> None:
    """SIGINT to every process this one started, as a terminal sends Ctrl-C to its whole group (a
    worker that got it from the terminal already gets it twice: its fold fails either way)."""
    import psutil  # here: the commands that start no process should not load it

    for child in psutil.Process().children(recursive=True):
        with suppress(psutil.Error):
            child.send_signal(signal.SIGINT)


def exit_code_of(stop: KeyboardInterrupt, interrupted: int = 130) -> int:
    """The exit code of a command stopped by Ctrl-C (`interrupted`) or by SIGTERM."""
    return EXIT_TERMINATED if isinstance(stop, Terminated) else interrupted


@contextmanager
def ctrl_c_ends_within(seconds: float, what: str, kept: str, exit_code: int = 130) -> Iterator[None]:
    """Inside the block, Ctrl-C raises KeyboardInterrupt as usual and also starts a clock: if the
    process still runs `seconds` later, or on a second Ctrl-C, it exits with `exit_code` at once,
    skipping the clean-up that hangs, and says why and what is `kept` ("`what` had not stopped…").
    The clock outlives the block, so it also covers the interpreter's exit. Outside the main thread
    (a notebook's worker) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def end_now(why: str, stacks: bool = True) -> None:
        if stacks and faulthandler.is_enabled():  # PYTHONFAULTHANDLER=1 (the tests): where it hung
            faulthandler.dump_traceback(all_threads=True)
        sys.stdout.flush()
        os.write(sys.stderr.fileno(), f"\ntandem: {what} {why}; {kept}\n".encode())
        os._exit(exit_code)

    def on_ctrl_c(signum: int, frame: FrameType | None) -> None:
        clock = threading.Timer(seconds, end_now, [f"had not stopped {seconds:g} s after Ctrl-C, so it was ended"])
        clock.daemon = True
        clock.start()
        signal.signal(signal.SIGINT, lambda *_: end_now("was ended by a second Ctrl-C"))
        raise KeyboardInterrupt

    def swallowed(unraisable: Any) -> None:
        # A Ctrl-C that lands in a garbage collector's or a weak reference's callback is printed
        # and lost (the cause of the CI hang), so the command would go on: it ends here instead.
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            end_now("stopped", stacks=False)
        hook(unraisable)

    previous, hook = signal.signal(signal.SIGINT, on_ctrl_c), sys.unraisablehook
    sys.unraisablehook = swallowed
    try:
        yield
    finally:
        sys.unraisablehook = hook
        if signal.getsignal(signal.SIGINT) is on_ctrl_c:  # no Ctrl-C came: the usual handler again
            signal.signal(signal.SIGINT, previous)
