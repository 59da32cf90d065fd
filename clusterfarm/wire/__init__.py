"""The wire: everything that crosses between the manager and its workers.

Both sides import it, and it imports neither. ``protocol`` defines every message (run spec, join
answer, packed cells and answers, error kinds) with its builder and its check; ``channel``
frames the manager's calls without blocking; ``pyro`` sets Pyro5 up the same way in every
process (serializer, sockets, TLS); ``access`` is what a process presents to its peers and
demands of them (a cluster's or a run's secret, passed to whatever connects or serves, never
process-wide); ``gate`` is the connection gate in front of every daemon; ``secret`` and
``certs`` make and read the credentials; ``nameserver`` starts, finds and lists the Pyro5
nameserver; ``worker_calls`` are the short calls made to one worker on a connection of its own.
Uses :mod:`.config`.
"""
