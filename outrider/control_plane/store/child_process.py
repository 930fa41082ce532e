"""Starting one of the store's helper processes (the writer, the projector) as a fresh interpreter.

``-P`` keeps the working directory off the child's import path; the parent's own path follows on the command
line, so the child imports the very code the server runs. The child's ``main(fd)`` gets one end of a socket
pair; the parent keeps the other.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

_BOOTSTRAP = "import json, sys; sys.path[:] = json.loads(sys.argv[1]); from {module} import main; main(int(sys.argv[2]))"


def spawn(module: str) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """Start ``module.main(fd)`` in a new interpreter; the process and the parent's end of their socket pair."""
    ours, theirs = socket.socketpair()
    with theirs:
        process = subprocess.Popen(
            [sys.executable, "-P", "-c", _BOOTSTRAP.format(module=module), json.dumps(sys.path), str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
        )
    return process, ours
