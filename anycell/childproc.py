"""Child processes that do not outlive their parent.

anycell starts processes (the nodes of ``anycell up``, simulated machines).
If the parent dies without cleaning up (``kill -9``, a crash), its children
must not keep running, holding ports, ptys and ROS names. On Linux the kernel
can signal a child when its parent dies; :func:`die_with_parent` asks for that.

Linux ties this to the *thread* that started the child: start such children
from a thread that lives as long as they should (the main thread, as anycell does).
"""

from __future__ import annotations

import signal


def die_with_parent() -> None:
    """For ``subprocess.Popen(preexec_fn=...)``: SIGTERM this child when its parent dies (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGTERM))   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):        # not Linux: the parent's own clean-up still ends the child
        pass
