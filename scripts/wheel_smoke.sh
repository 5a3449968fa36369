#!/usr/bin/env bash
# Wheel smoke test: build a wheel, install it into a fresh venv (no system site-packages) next to
# the torch it was built against, and check it there: parity with torch.nn and
# `python -m fastrnn.info`, run from outside the source tree.
#
#   bash scripts/wheel_smoke.sh                  # wheel from this tree: pip wheel --no-build-isolation .
#   bash scripts/wheel_smoke.sh --sdist          # sdist first, check it carries csrc/, wheel from it
#   bash scripts/wheel_smoke.sh --wheel FILE     # test a wheel built elsewhere (e.g. auditwheel's)
#
# Environment: SMOKE_DIR (work dir, default /tmp/fastrnn-wheel-smoke; wheels land in
# $SMOKE_DIR/wheelhouse), PYTHON (the build python, with torch installed), TORCH_SPEC (what the
# venv installs, default torch==<the build python's torch version>; pip's usual PIP_INDEX_URL /
# PIP_EXTRA_INDEX_URL choose where from), MAX_JOBS (build jobs, default 1),
# FASTRNN_FORCE_CPU / FASTRNN_FORCE_CUDA / TORCH_CUDA_ARCH_LIST as for setup.py.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
WORK="${SMOKE_DIR:-/tmp/fastrnn-wheel-smoke}"
WHEELHOUSE="$WORK/wheelhouse"
export MAX_JOBS="${MAX_JOBS:-1}" PIP_DISABLE_PIP_VERSION_CHECK=1
mode="${1:-tree}"

rm -rf "$WORK"
mkdir -p "$WHEELHOUSE"

check_sdist() {  # every file of csrc/ (and py.typed, setup.py, pyproject.toml) is in the sdist
  local sdist="$1" listing missing=0
  listing=$(tar -tzf "$sdist" | sed 's|^[^/]*/||')
  while IFS= read -r file; do
    grep -qxF "$file" <<< "$listing" || { echo "sdist lacks $file" >&2; missing=1; }
  done < <(cd "$ROOT" && find csrc -type f | sort; printf '%s\n' fastrnn/py.typed setup.py \
             pyproject.toml MANIFEST.in)
  [ "$missing" -eq 0 ] || return 1
  echo "wheel smoke: $(basename "$sdist") carries all $(cd "$ROOT" && find csrc -type f | wc -l)" \
       "files of csrc/ ($(grep -c '^csrc/.*\.cu$' <<< "$listing") .cu," \
       "$(grep -c '^csrc/.*\.cpp$' <<< "$listing") .cpp, $(grep -cE '^csrc/.*\.(h|cuh)$' <<< "$listing") headers)"
}

case "$mode" in
  tree)
    (cd "$ROOT" && "$PY" -m pip wheel --no-build-isolation --no-deps -w "$WHEELHOUSE" .) \
      > "$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; exit 1; }
    ;;
  --sdist)
    (cd "$ROOT" && "$PY" setup.py -q sdist -d "$WORK") > "$WORK/sdist.log" 2>&1 \
      || { tail -40 "$WORK/sdist.log"; exit 1; }
    sdist=$(ls "$WORK"/fastrnn-*.tar.gz)
    check_sdist "$sdist"
    mkdir "$WORK/unpacked" && tar -xzf "$sdist" -C "$WORK/unpacked"
    (cd "$WORK"/unpacked/fastrnn-* && "$PY" -m pip wheel --no-build-isolation --no-deps \
       -w "$WHEELHOUSE" .) > "$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; exit 1; }
    ;;
  --wheel)
    cp "$2" "$WHEELHOUSE/"
    ;;
  *)
    echo "usage: $0 [--sdist | --wheel FILE]" >&2; exit 2
    ;;
esac
wheel=$(ls "$WHEELHOUSE"/fastrnn-*.whl)
echo "wheel smoke: testing $(basename "$wheel") ($(du -h "$wheel" | cut -f1))"

# What the wheel holds: the extension, py.typed, the Python package; no sources; torch pinned.
"$PY" - "$wheel" <<'EOF'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
assert any(n.startswith("fastrnn/_C") and n.endswith(".so") for n in names), names
for required in ("fastrnn/py.typed", "fastrnn/__init__.py", "fastrnn/info.py"):
    assert required in names, f"{required} missing: {names}"
assert not any(n.startswith(("csrc/", "tests/")) for n in names), names
metadata = zipfile.ZipFile(sys.argv[1]).read(
    next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist: torch")]
assert requires and "==" in requires[0], requires
print(f"wheel smoke: {len(names)} files, {requires[0]}")
EOF

# A fresh venv: no system site-packages, so only what the wheel declares gets in.
TORCH_SPEC="${TORCH_SPEC:-torch==$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')}"
"$PY" -m venv "$WORK/venv"
VPY="$WORK/venv/bin/python"
"$VPY" -m pip install -q "$TORCH_SPEC" > "$WORK/venv.log" 2>&1 || { tail -20 "$WORK/venv.log"; exit 1; }
"$VPY" -m pip install -q "$wheel" >> "$WORK/venv.log" 2>&1 || { tail -20 "$WORK/venv.log"; exit 1; }
echo "wheel smoke: venv has $("$VPY" -m pip list 2>/dev/null | grep -iE '^(torch|fastrnn) ' | tr -s ' ' | paste -sd ',')"

# From a directory without a fastrnn/ in it, so `import fastrnn` can only find the installed one.
mkdir -p "$WORK/run" && cd "$WORK/run"
"$VPY" "$ROOT/scripts/wheel_smoke.py"
"$VPY" -m fastrnn.info
echo "wheel smoke: OK"
