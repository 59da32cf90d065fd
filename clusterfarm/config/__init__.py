"""Configuration: the settings file, year and member specs, and logging set-up.

Runs in every process (manager, worker daemon, nameserver, task process). ``settings`` loads
and checks the TOML settings against the packaged ``default.toml`` beside it (the one source
of every default); ``specs`` parses ``2000-2012``-style year and member lists;
``substitution`` expands ``${VAR:-default}``; ``logging_setup`` sets up each process's
rotated text or JSON log. Uses only the standard library and :mod:`clusterfarm.errors`.
"""
