"""``make demo``: the whole of Outrider on one machine with no cluster, for a newcomer's first minute.

The control plane on a fresh SQLite file, the real operator against KMock (a Kubernetes API emulator on
127.0.0.1), and a driver that plays the rest of the world: it creates Targets and Runs, acts as the Job
controller (starts admitted Jobs, completes them, some failing so a circuit breaker trips), and runs demo
workers that post their events through the public API like real agents. Every console page carries a DEMO
banner. See docs/getting-started/demo.md.
"""
