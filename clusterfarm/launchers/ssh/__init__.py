"""The SSH launcher: worker daemons on the settings' hosts, reached with paramiko.

``session`` logs in and runs commands (the only module that imports paramiko), ``launcher``
starts and stops the daemons on every host at once, ``daemons`` is the helper it runs on each
host, ``doctor`` checks the hosts before a run.
"""
