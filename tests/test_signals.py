"""Stop signals (green_profiles.runs.signals): raised like Ctrl-C, and held while a part is written."""

from __future__ import annotations

import os
import signal

import pytest

from green_profiles.runs.signals import Stopped, exit_status, stop_signals_as_interrupt, stop_signals_held


def test_a_stop_signal_raises_like_ctrl_c_and_exits_with_its_status():
    with pytest.raises(Stopped, match="SIGTERM") as caught, stop_signals_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
    assert exit_status(caught.value) == 143


def test_a_stop_signal_waits_for_the_held_block_then_stops():
    # Catches a part's write aborted half-way by a stop (the windows in it lost): the stop lands after the write.
    written = []
    with pytest.raises(Stopped, match="SIGHUP"), stop_signals_as_interrupt():
        with stop_signals_held():
            os.kill(os.getpid(), signal.SIGHUP)
            written.append("the whole part")
        written.append("never: the stop is delivered as the block ends")
    assert written == ["the whole part"]


def test_a_second_stop_while_already_stopping_is_dropped():
    before = signal.getsignal(signal.SIGTERM)
    with stop_signals_as_interrupt():
        with stop_signals_held(deliver=False):
            os.kill(os.getpid(), signal.SIGTERM)
    # The handlers are back as they were outside both blocks.
    assert signal.getsignal(signal.SIGTERM) == before
