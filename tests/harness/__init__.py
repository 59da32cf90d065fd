"""What the tests (and the benchmarks) share: the clusterfarm CLI as a subprocess, the
processes it starts, and the real hosts they stand up (an sshd, a single-node SLURM, network
namespaces, full disks, a headless browser).

Test modules import from here, never from each other or from ``conftest``; ``conftest`` holds
only the fixtures. Importing :mod:`.secret` (which :mod:`.cli` does) sets up the session's
cluster secret.
"""
