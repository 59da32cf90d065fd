"""The SLURM launcher: worker daemons as the tasks of one SLURM job array.

``commands`` runs ``sbatch``, ``squeue``, ``scancel`` and ``scontrol`` (never ``sacct``, which
many clusters do not run) and says "unknown" when one fails, never "job gone"; ``launcher``
submits, keeps, explains and cancels the workers; ``doctor`` checks a compute node with one
short job.
"""
