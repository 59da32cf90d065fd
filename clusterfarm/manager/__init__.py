"""The manager process: one ``clusterfarm run`` from start to exit code.

``runner`` puts a run together (tasks, cells, state, workers, display); ``manager`` keeps
the books of the dispatch (claims, answers, retries, leases, lost workers) and emits
``events``; ``dispatcher`` drives every worker's calls from one thread;
``worker_heartbeats`` pings quiet workers and finds new ones; ``quarantine`` rests a host
whose workers keep failing; ``provenance`` records what produced the results. It never
prints and never imports the worker side: it reaches workers through :mod:`.wire`, keeps
its state through :mod:`.record`, and is shown through the ``Display`` it is given.
"""
