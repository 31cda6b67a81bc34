"""The signals that stop the server, shared by the supervisor, the model owner and the fronts."""

from __future__ import annotations

import signal

#: The kubelet's SIGTERM; a terminal's Ctrl-C, to the process group.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
