"""Launchers: how worker daemons are placed on machines and removed again.

``base`` holds the interface every launcher implements and what they share; ``local``,
``ssh`` and ``slurm`` are the launchers (none imports another); ``preflight`` is the probe
their ``doctor`` runs; ``logs`` finds the launcher that owns a worker's log.
"""
