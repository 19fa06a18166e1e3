"""Ctrl-C ends a command even when the clean-up after it hangs (tandem.stopping)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from tandem.stopping import ctrl_c_ends_within

HANGS_AFTER_CTRL_C = textwrap.dedent(
    """
    import sys, threading
    from tandem.stopping import ctrl_c_ends_within

    with ctrl_c_ends_within(float(sys.argv[1]), "gave up waiting", 130):
        try:
            print("ready", flush=True)
            threading.Event().wait()
        except KeyboardInterrupt:
            print("stopping", flush=True)
            threading.Event().wait()  # a clean-up that never ends
    """
)


def hanging_command(seconds: float) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HANGS_AFTER_CTRL_C, str(seconds)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"},  # its stack dump is not the line
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


def test_a_stop_that_hangs_is_ended_with_the_farewell_once_its_time_is_up():
    process = hanging_command(2.0)
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "stopping" in out and err.strip() == "tandem: gave up waiting"
    assert time.monotonic() - started >= 2.0


def test_a_second_ctrl_c_ends_a_hanging_stop_at_once():
    process = hanging_command(600.0)
    process.send_signal(signal.SIGINT)
    assert process.stdout is not None and process.stdout.readline() == "stopping\n"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)  # not the 600 s
    assert process.returncode == 130 and err.strip() == "tandem: gave up waiting"


def test_without_a_ctrl_c_the_usual_handler_is_back_after_the_block():
    before = signal.getsignal(signal.SIGINT)
    with ctrl_c_ends_within(1.0, "unused"):
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before
