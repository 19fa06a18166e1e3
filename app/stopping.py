"""A stop signal always ends a command promptly, with its worker processes, saying what it kept.

Why: a command is stopped three ways, and each went wrong once.
- A terminal's Ctrl-C reaches the command's whole process group; Python turns it into a
  KeyboardInterrupt and the command's handler says what was kept. But the stop runs other code
  first (LangGraph waits for a step's thread, which waits for a fold fitting in it or in a worker;
  joblib replaces the pool it aborted; the interpreter joins threads at exit), any of which may
  hang: a run at `--n-jobs 1` waited for the fold it was fitting.
- A KeyboardInterrupt raised inside a garbage collector's or a weak reference's callback is
  printed as "Exception ignored" and dropped, so the command went on as if no Ctrl-C had come:
  this held `tandem train` for over two minutes on CI (December 2026).
- A signal sent to the command's process alone (`kill -INT`, or SIGTERM from `kill`, a scheduler or
  a container's stop) reaches neither its worker processes nor, under SIGTERM's default, any
  clean-up at all: a run waited minutes for its workers' folds, or left them fitting with nobody
  to take the result.

So the first SIGINT or SIGTERM stops the command as a terminal's Ctrl-C does, workers included,
and if it has not ended `STOP_SECONDS` later, or on a second signal, the process ends at once.
Ending it there loses nothing: every file a command keeps is written atomically and every
checkpoint in a transaction (the crash tests kill runs with SIGKILL at each such point).
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

from tandem.tools.stop_request import clear_stop_request, request_stop

#: How long a stopped command may take to end before it is ended without its clean-up.
STOP_SECONDS = 30.0
#: Exit codes of a command stopped by SIGINT (Ctrl-C) or SIGTERM, as a shell reports them.
EXIT_INTERRUPTED = 128 + signal.SIGINT
EXIT_TERMINATED = 128 + signal.SIGTERM
_NAMES: dict[int, str] = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be, so it takes the same way out and
    the command says what is saved."""


def exit_code_of(stop: KeyboardInterrupt) -> int:
    """The exit code of a command stopped by Ctrl-C or by SIGTERM."""
    return EXIT_TERMINATED if isinstance(stop, Terminated) else EXIT_INTERRUPTED


@contextmanager
def signals_stop_the_command(
    farewell: Callable[[], tuple[str, str]], *, owns_process: bool, seconds: float = STOP_SECONDS
) -> Iterator[None]:
    """Inside the block, SIGINT and SIGTERM stop the command, and it surely ends.

    The first signal asks the fits running in this process to stop (`tools/stop_request.py`),
    sends SIGINT to this process's children (the fold workers) and raises KeyboardInterrupt in the
    main thread (`Terminated` for SIGTERM), so the command's own handler says what is kept.

    When the command `owns_process` (it is the process's command, not a call inside a test's or a
    notebook's process, which it must not end), the first signal also starts a clock: if the
    process still runs `seconds` later, or on a second signal, its children are killed and it
    exits at once with the first signal's code, printing "tandem: WHAT had not stopped…; KEPT"
    from `farewell()` (called then, so it names what the command knew by then). A
    KeyboardInterrupt that Python drops in a callback ends it the same way. The clock outlives the
    block, as the interpreter's exit may hang too.

    Without a signal the previous handlers are back after the block. Outside the main thread (a
    notebook's worker, where no handler can be set) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    first: list[int] = []

    def end_now(why: str, stacks: bool = True) -> None:
        if stacks and faulthandler.is_enabled():  # PYTHONFAULTHANDLER=1 (the tests): where it hung
            faulthandler.dump_traceback(all_threads=True)
        _kill_children()
        what, kept = farewell()
        with suppress(Exception):
            sys.stdout.flush()
        os.write(sys.stderr.fileno(), f"\ntandem: {what} {why}; {kept}\n".encode())
        os._exit(EXIT_TERMINATED if first == [signal.SIGTERM] else EXIT_INTERRUPTED)

    def on_second_signal(signum: int, frame: FrameType | None) -> None:
        end_now(f"was ended by a second {'Ctrl-C' if signum == signal.SIGINT else 'stop signal'}")

    def on_signal(signum: int, frame: FrameType | None) -> None:
        first.append(signum)
        if owns_process:
            for each in _NAMES:
                signal.signal(each, on_second_signal)
            why = f"had not stopped {seconds:g} s after {_NAMES[signum]}, so it was ended"
            clock = threading.Timer(seconds, end_now, [why])
            clock.daemon = True
            clock.start()
        request_stop()
        _interrupt_children()
        raise Terminated if signum == signal.SIGTERM else KeyboardInterrupt

    def dropped(unraisable: Any) -> None:
        # A Ctrl-C that lands in a garbage collector's or a weak reference's callback is printed
        # and lost (the cause of the CI hang), so the command would go on: it ends here instead.
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            end_now("stopped", stacks=False)
        hook(unraisable)

    previous = {signum: signal.signal(signum, on_signal) for signum in _NAMES}
    hook = sys.unraisablehook
    if owns_process:
        sys.unraisablehook = dropped
    try:
        yield
    finally:
        sys.unraisablehook = hook
        if not (first and owns_process):  # the usual handlers again, unless the clock runs
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        clear_stop_request()


def _children() -> list[Any]:
    import psutil  # here: the commands that start no process should not load it

    with suppress(psutil.Error):
        return list(psutil.Process().children(recursive=True))
    return []


def _interrupt_children() -> None:
    """SIGINT to every process this one started, as a terminal sends Ctrl-C to its whole group (a
    worker that got it from the terminal already gets it twice: its fold fails either way)."""
    for child in _children():
        with suppress(Exception):
            child.send_signal(signal.SIGINT)


def _kill_children() -> None:
    """SIGKILL to every process this one started, so none fits on with nobody to take its result."""
    for child in _children():
        with suppress(Exception):
            child.kill()
