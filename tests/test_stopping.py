"""Ctrl-C ends a command even when the clean-up after it hangs (tandem.stopping)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from tandem.stopping import ctrl_c_ends_within

HANGS_AFTER_CTRL_C = textwrap.dedent(
    """
    import sys, threading
    from tandem.stopping import ctrl_c_ends_within

    with ctrl_c_ends_within(float(sys.argv[1]), "the command", "nothing was lost", 130):
        try:
            print("ready", flush=True)
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping", flush=True)
            threading.Event().wait()  # a clean-up that never ends
    """
)

STARTED: list[subprocess.Popen[str]] = []

CTRL_C_IN_A_CALLBACK = textwrap.dedent(
    """
    import os, signal, threading, weakref
    from tandem.stopping import ctrl_c_ends_within

    class Node:
        pass

    def on_collected(_):
        os.kill(os.getpid(), signal.SIGINT)  # delivered before kill returns: the handler runs in this callback
        for _ in range(1000):
            pass

    with ctrl_c_ends_within(600.0, "the command", "nothing was lost", 130):
        try:
            node = Node()
            ref = weakref.ref(node, on_collected)
            del node  # Python prints the callback's KeyboardInterrupt and drops it
            print("went on", flush=True)
            threading.Event().wait()
        except KeyboardInterrupt:
            print("caught", flush=True)
    """
)


@pytest.fixture(autouse=True)
def no_process_outlives_its_test() -> Iterator[None]:
    yield
    while STARTED:
        STARTED.pop().kill()  # a failed test's child may still be hanging


def command(script: str, *args: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"},  # its stack dump is not the line
    )
    STARTED.append(process)
    return process


def hanging_command(seconds: float) -> subprocess.Popen[str]:
    process = command(HANGS_AFTER_CTRL_C, str(seconds))
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


def test_a_stop_that_hangs_is_ended_with_the_farewell_once_its_time_is_up():
    process = hanging_command(2.0)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "stopping" in out
    assert err.strip() == "tandem: the command had not stopped 2 s after Ctrl-C, so it was ended; nothing was lost"
    assert time.monotonic() - started >= 2.0


def test_a_second_ctrl_c_ends_a_hanging_stop_at_once():
    process = hanging_command(600.0)
    process.send_signal(signal.SIGINT)
    assert process.stdout is not None and process.stdout.readline() == "stopping\n"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)  # not the 600 s
    assert process.returncode == 130
    assert err.strip() == "tandem: the command was ended by a second Ctrl-C; nothing was lost"


def test_a_ctrl_c_that_python_drops_in_a_callback_still_ends_the_command_at_once():
    process = command(CTRL_C_IN_A_CALLBACK)
    out, err = process.communicate(timeout=60)  # not the 600 s, and not forever
    assert process.returncode == 130
    assert out == "" and err.strip() == "tandem: the command stopped; nothing was lost"


def test_without_a_ctrl_c_the_usual_handler_is_back_after_the_block():
    before = signal.getsignal(signal.SIGINT)
    with ctrl_c_ends_within(1.0, "unused", "unused"):
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before
