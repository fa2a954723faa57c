#!/usr/bin/env bash
# The bench-only venv with cryptofeed 2.4.1, the comparison of bench/hotpath.py (issue 10).
# cryptofeed is never a tradelake dependency: it lives in its own venv, built from its sdist
# (Cython) once; the stamp makes a second run a no-op. Usage: bench/cryptofeed-venv.sh [DIR]
set -euo pipefail
VERSION=2.4.1
DIR=${1:-"$(cd "$(dirname "$0")/.." && pwd)/.venv-bench-cryptofeed"}
STAMP="$DIR/.cryptofeed-$VERSION"
if [ -f "$STAMP" ]; then
  exit 0
fi
${PYTHON:-python3} -m venv "$DIR"
"$DIR/bin/python" -m pip install --quiet --upgrade pip
"$DIR/bin/python" -m pip install --quiet "cryptofeed==$VERSION" orjson
"$DIR/bin/python" -c "import cryptofeed.exchanges.phemex"
touch "$STAMP"
