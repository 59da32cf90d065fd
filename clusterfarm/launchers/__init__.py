"""Launchers: how worker daemons are placed on machines and removed again (manager side).

``base`` holds the interface every launcher implements and what they share; ``local``,
``ssh`` and ``slurm`` are the launchers (none imports another); ``preflight`` is the probe
their ``doctor`` runs; ``pools`` are where a run takes its workers from, ``roster`` what the
registered workers are doing, ``worker_logs`` which launcher owns a worker's log. Runs in the
manager's process and the CLI; uses :mod:`.manager` (the interfaces a pool fulfils),
:mod:`.wire` and :mod:`.config`, never the worker side.
"""
