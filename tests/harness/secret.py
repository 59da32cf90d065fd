"""The cluster secret of a test session, set up on import.

It lives in a throw-away file that the default settings find through
``$CLUSTERFARM_SECRET_FILE``, so no test touches ``~/.clusterfarm``; :data:`ACCESS` is what
the test process presents with it (and what its in-process nameservers demand).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from clusterfarm.wire.access import Access
from clusterfarm.wire.secret import new_secret, write_secret

SECRET = new_secret()
SECRET_FILE = Path(tempfile.mkdtemp(prefix="cf-secret-")) / "secret"
write_secret(SECRET_FILE, SECRET)
os.environ["CLUSTERFARM_SECRET_FILE"] = str(SECRET_FILE)
ACCESS = Access(SECRET)
