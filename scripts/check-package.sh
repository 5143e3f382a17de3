#!/usr/bin/env bash
# Check the distribution: build an sdist and a wheel, `twine check` them, look
# inside them, and install the wheel into a fresh venv that has neither
# python-ldap nor psycopg2, where `import geventpool` must work.
#
# Usage: scripts/check-package.sh [PYTHON]    (default: .venv/bin/python)
# PYTHON needs the `build` and `twine` packages (the `dev` extra).  Needs a
# package index (for the build backend and for gevent in the fresh venv).
# Set CHECK_PACKAGE_KEEP=1 to keep the temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${1:-.venv/bin/python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/geventpool-package.XXXXXX")
if [ "${CHECK_PACKAGE_KEEP:-0}" = 1 ]; then
    echo "check-package: keeping $WORK"
else
    trap 'rm -rf "$WORK"' EXIT
fi
fail() { echo "check-package: FAILED: $*" >&2; exit 1; }
step() { echo "check-package: $*"; }

step "building the sdist and the wheel with $PYTHON -m build"
# Build from a copy of the tracked files, so that local clutter
# (build/, *.egg-info, caches) cannot leak into the sdist.
mkdir "$WORK/src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard \
        | while IFS= read -r -d '' path; do [ -f "$path" ] && printf '%s\0' "$path"; done \
        | xargs -0 cp --parents -t "$WORK/src"
else
    tar -c --exclude=./.venv --exclude=./.tox --exclude=./build --exclude=./dist --exclude='*.egg-info' . \
        | tar -x -C "$WORK/src"
fi
"$PYTHON" -m build --sdist --wheel --outdir "$WORK/dist" "$WORK/src" > "$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log" >&2; fail "python -m build"; }
shopt -s nullglob
sdists=("$WORK"/dist/*.tar.gz)
wheels=("$WORK"/dist/*.whl)
[ ${#sdists[@]} = 1 ] || fail "expected one sdist, found ${#sdists[@]}"
[ ${#wheels[@]} = 1 ] || fail "expected one wheel, found ${#wheels[@]}"
step "built $(basename "${sdists[0]}") and $(basename "${wheels[0]}")"

step "twine check --strict"
"$PYTHON" -m twine check --strict "${sdists[0]}" "${wheels[0]}"

step "looking inside the wheel and the sdist"
"$PYTHON" - "${wheels[0]}" "${sdists[0]}" <<'PY'
import sys, tarfile, zipfile

wheel, sdist = sys.argv[1], sys.argv[2]
names = zipfile.ZipFile(wheel).namelist()
required = [
    "geventpool/__init__.py", "geventpool/py.typed", "geventpool/pool.py",
    "geventpool/ldap/__init__.py", "geventpool/dbapi/__init__.py", "geventpool/testing/__init__.py",
]
missing = [name for name in required if name not in names]
stray = [name for name in names if name.split("/")[0] in ("tests", "examples", "benchmarks", "docs")]
if missing or stray:
    sys.exit(f"wheel: missing {missing}, should not contain {stray[:5]}")
members = [m.split("/", 1)[-1] for m in tarfile.open(sdist).getnames()]
for name in ("README.rst", "CHANGES.rst", "LICENSE", "setup.cfg", "geventpool/py.typed"):
    if name not in members:
        sys.exit(f"sdist: {name} is missing")
print(f"  wheel: {len(names)} files, py.typed included; sdist: {len(members)} entries")
PY

step "installing the wheel into a fresh venv (no python-ldap, no psycopg2)"
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q "${wheels[0]}" > "$WORK/install.log" 2>&1 \
    || { tail -40 "$WORK/install.log" >&2; fail "pip install of the wheel"; }
(cd "$WORK" && "$WORK/venv/bin/python" - <<'PY'
import importlib.util, sys

for absent in ("ldap", "psycopg2"):
    if importlib.util.find_spec(absent) is not None:
        sys.exit(f"the fresh venv unexpectedly has {absent}")
import geventpool
import geventpool.dbapi
import geventpool.testing
from geventpool import ConnectionPool, ConfigurationError

assert geventpool.__file__.startswith(sys.prefix), geventpool.__file__  # the installed copy
class Pool(ConnectionPool):
    def _new_connection(self):
        return object()
pool = Pool(2)
with pool.get() as conn:
    assert conn is not None
pool.close()
try:
    import geventpool.ldap
except ImportError as error:
    print(f"  geventpool.ldap without python-ldap: ImportError ({error})")
else:
    sys.exit("geventpool.ldap imported without python-ldap")
print(f"  import geventpool {geventpool.__version__} works; a pool lends and closes")
PY
) || fail "importing geventpool in the fresh venv"

step "the gunicorn extra: a gunicorn whose gevent worker boots (pip install 'geventpool[gunicorn]')"
"$WORK/venv/bin/python" -m pip install -q "${wheels[0]}[gunicorn]" > "$WORK/install-gunicorn.log" 2>&1 \
    || { tail -40 "$WORK/install-gunicorn.log" >&2; fail "pip install of the wheel with [gunicorn]"; }
cat > "$WORK/app.py" <<'PY'
from geventpool import ConnectionPool


class Pool(ConnectionPool):
    def _new_connection(self):
        return object()


pool = Pool(2)


def application(environ, start_response):
    with pool.get():
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"pooled\n"]
PY
port=$("$WORK/venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
(cd "$WORK" && exec "$WORK/venv/bin/gunicorn" -k gevent -w 1 -b "127.0.0.1:$port" app:application) \
    > "$WORK/gunicorn.log" 2>&1 &
gunicorn_pid=$!
answer=$("$WORK/venv/bin/python" - "$port" <<'PY'
import sys, time, urllib.request

deadline = time.monotonic() + 30
while True:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/", timeout=2) as response:
            print(response.read().decode().strip())
            break
    except OSError:
        if time.monotonic() > deadline:
            print("no answer")
            break
        time.sleep(0.2)
PY
)
kill "$gunicorn_pid" 2>/dev/null || true
wait "$gunicorn_pid" 2>/dev/null || true
if [ "$answer" != "pooled" ]; then
    tail -20 "$WORK/gunicorn.log" >&2
    fail "gunicorn -k gevent with geventpool[gunicorn] did not serve (got: $answer)"
fi
echo "  gunicorn -k gevent booted from geventpool[gunicorn] alone and served through a pool"

step "OK"
