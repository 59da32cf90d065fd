# Shared by bin/demo and bin/test: make .venv with Python 3.11+ and install the project into
# it, only when pyproject.toml changed since the last install (so reruns are fast).
# Usage: source bin/_venv.sh "<pip install target>"
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
TARGET="$1"

find_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "Error: clusterfarm needs Python 3.11 or newer; install it or set PYTHON=/path/to/python3.11" >&2
  return 1
}

if [ ! -x "$VENV/bin/python" ]; then
  PY="$(find_python)"
  echo "making $VENV with $("$PY" --version)" >&2
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
fi

STAMP="$VENV/.installed-$(echo "$TARGET" | tr -c 'a-z' '_')"
WANT="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "installing clusterfarm$( [ "$TARGET" = "." ] || echo " with $TARGET") into .venv ..." >&2
  (cd "$ROOT" && "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$TARGET") >&2
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
