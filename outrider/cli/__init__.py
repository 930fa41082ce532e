"""The ``outrider`` command: servers (control-plane, operator) and client commands for people and automation."""
