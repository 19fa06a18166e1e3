"""Ctrl-C that always ends a command, even when a library's clean-up hangs.

Why: Python turns Ctrl-C into a KeyboardInterrupt, and the command's own handler then says what
was kept. But the stop runs other code first: LangGraph waits for a step's background threads,
joblib replaces the worker pool it aborted, the interpreter joins threads at exit. One of these
once held `tandem train` for more than two minutes after a Ctrl-C (CI, December 2026) and could not
be reproduced. A user must not have to find the process and kill it, so a stop that takes longer
than it should ends the process; what the command keeps is written atomically (the policy file)
before any stop can begin, so nothing is lost. A second Ctrl-C ends it at once, as users expect.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


@contextmanager
def ctrl_c_ends_within(seconds: float, farewell: str, exit_code: int = 130) -> Iterator[None]:
    """Inside the block, Ctrl-C raises KeyboardInterrupt as usual and also starts a clock: if the
    process still runs `seconds` later (or on a second Ctrl-C) it prints `farewell` and exits with
    `exit_code` at once, skipping the clean-up that hangs. The clock outlives the block, so it also
    covers the interpreter's exit. Outside the main thread (a notebook's worker) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def end_now() -> None:
        if faulthandler.is_enabled():  # PYTHONFAULTHANDLER=1 (the tests): where it hung
            faulthandler.dump_traceback(all_threads=True)
        sys.stdout.flush()
        os.write(sys.stderr.fileno(), f"\ntandem: {farewell}\n".encode())
        os._exit(exit_code)

    def on_ctrl_c(signum: int, frame: FrameType | None) -> None:
        clock = threading.Timer(seconds, end_now)
        clock.daemon = True
        clock.start()
        signal.signal(signal.SIGINT, lambda *_: end_now())
        raise KeyboardInterrupt

    def swallowed(unraisable: Any) -> None:
        # A Ctrl-C that lands in a garbage collector's callback is printed and lost (the cause of
        # the CI hang): it is not printed, and it ends the process as a hang would, at once.
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            end_now()
        hook(unraisable)

    previous, hook = signal.signal(signal.SIGINT, on_ctrl_c), sys.unraisablehook
    sys.unraisablehook = swallowed
    try:
        yield
    finally:
        sys.unraisablehook = hook
        if signal.getsignal(signal.SIGINT) is on_ctrl_c:  # no Ctrl-C came: the usual handler again
            signal.signal(signal.SIGINT, previous)
