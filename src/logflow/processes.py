"""Helpers for the processes LogFlow starts itself (serve's processor child, the prepare helper)."""

from __future__ import annotations

import signal


def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies (even by kill -9).

    The signal follows the parent *thread* that started this process, so start helpers from a
    thread that lives as long as they should.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass
