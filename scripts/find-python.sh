#!/usr/bin/env bash
# Print the path of a working Python X.Y interpreter (argument: X.Y), or fail.
# Tries pythonX.Y on the PATH first, then pyenv's installed versions (whose shims
# refuse a version that is not selected).
set -euo pipefail
version=${1:?usage: find-python.sh X.Y}
if command -v "python$version" >/dev/null 2>&1 && "python$version" -c '' >/dev/null 2>&1; then
    command -v "python$version"
    exit 0
fi
root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for candidate in "$root"/versions/"$version".*/bin/"python$version"; do
    if [ -x "$candidate" ] && "$candidate" -c '' >/dev/null 2>&1; then
        echo "$candidate"
        exit 0
    fi
done
echo "find-python: no working Python $version (PATH or $root/versions)" >&2
exit 1
