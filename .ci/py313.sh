#!/usr/bin/env bash
# The whole test suite under Python 3.13 with Forge Neo's stack (numpy 2, pydantic 2, gradio 4.40.0),
# in its own virtualenv, kept in $BLOCKMERGE_CI_VENVS/py313 (default ~/.cache/blockmerge/ci-venvs)
# and reused by later runs. A fresh machine builds it from PyPI:
#
#   .ci/py313.sh             make or reuse the venv, install the pins, run the README's test command
#   .ci/py313.sh --rebuild   delete the venv first
#
# Python 3.13 is found as $BLOCKMERGE_PY313, else python3.13 on PATH, else pyenv's 3.13.x (a pyenv
# shim that does not resolve is not taken). Without one the script stops with a clear message.
#
# torch: PyPI's torch 2.13.0 for cp313 is the CUDA build (the CPU-only wheels are on PyTorch's own
# index, which CI cannot rely on reaching). It runs on CPU, but pulls the nvidia-* libraries with it:
# about 2.7 GB to download and 5 GB on disk, once; `--no-deps` does not work (libcudnn.so.9 missing).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venvs=${BLOCKMERGE_CI_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/blockmerge/ci-venvs}
venv=$venvs/py313
rebuild=0
for arg in "$@"; do
    case $arg in
        --rebuild) rebuild=1 ;;
        *) echo "usage: $0 [--rebuild]" >&2; exit 2 ;;
    esac
done
export PIP_DISABLE_PIP_VERSION_CHECK=1 GRADIO_ANALYTICS_ENABLED=False

is313() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; }
find_py313() {
    local c
    for c in "${BLOCKMERGE_PY313:-}" "$(command -v python3.13 || true)" \
             "$(PYENV_VERSION=$(pyenv versions --bare 2>/dev/null | grep -m1 '^3\.13') pyenv which python3.13 2>/dev/null || true)" \
             "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13; do
        if is313 "$c"; then echo "$c"; return 0; fi
    done
    return 1
}

# Forge Neo's pins: its requirements.txt (Haoming02/sd-webui-forge-classic, branch neo, 1e8cfbc1)
# for everything we import, and its launch_utils' GRADIO_PACKAGE=gradio==4.40.0. Neo installs gradio
# first and its requirements after, so Pillow ends at 12.3.0 although gradio 4.40.0 asks for < 11:
# the same two steps here (pip reports the conflict and installs; Neo runs that way).
gradio_step="gradio==4.40.0"
# audioop-lts: Python 3.13 dropped audioop, and gradio imports pydub, which needs it (Neo pins it too).
neo_step="numpy==2.3.5 pydantic==2.10.6 pydantic-core==2.27.2 safetensors==0.8.0 Pillow==12.3.0
          fastapi==0.127.1 httpx==0.28.1 huggingface-hub==0.36.2 tqdm==4.70.0 audioop-lts==0.2.2"
torch_pin="torch==2.13.0"

if [ -n "${BLOCKMERGE_PY313:-}" ] && ! is313 "$BLOCKMERGE_PY313"; then
    echo "py313: BLOCKMERGE_PY313=$BLOCKMERGE_PY313 is not a working Python 3.13. Fix: point it at a python3.13." >&2
    exit 1
fi
if ! py=$(find_py313); then
    echo "py313: no Python 3.13 found (tried \$BLOCKMERGE_PY313, python3.13 on PATH, pyenv's 3.13.x)." >&2
    echo "py313: Fix: install Python 3.13 (e.g. \`pyenv install 3.13\`) or set BLOCKMERGE_PY313=/path/to/python3.13." >&2
    exit 1
fi

pip_install() {  # quiet when it works, the whole log when it does not
    local log
    log=$(mktemp)
    if ! "$venv/bin/python" -m pip install --quiet "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}

start=$SECONDS
[ $rebuild = 0 ] || rm -rf "$venv"
if [ -x "$venv/bin/python" ] && ! is313 "$venv/bin/python"; then
    echo "py313: $venv is not a Python 3.13 venv; rebuilding it"
    rm -rf "$venv"
fi
if [ -x "$venv/bin/python" ]; then
    echo "== py313: reusing $venv (built with $py)"
else
    echo "== py313: building $venv with $py (first run: torch's CUDA build from PyPI, ~2.7 GB)"
    "$py" -m venv "$venv"
fi
# pip does nothing when the pins are already installed, so a reused venv costs a few seconds here
pip_install "$torch_pin"
# as Neo's launch_utils: gradio only when it is missing (again, pip would put Pillow back below 11)
if ! "$venv/bin/python" -m pip show --quiet gradio >/dev/null 2>&1; then
    # shellcheck disable=SC2086  # the pins are words
    pip_install $gradio_step
fi
# shellcheck disable=SC2086
pip_install $neo_step -r "$root/requirements-dev.txt"
echo "   installed in $((SECONDS - start)) s ($(du -sh "$venv" 2>/dev/null | cut -f1) on disk):"
"$venv/bin/python" - <<'EOF'
import sys
from importlib.metadata import version
names = ["torch", "numpy", "scipy", "safetensors", "Pillow", "tqdm", "pydantic", "fastapi", "httpx",
         "huggingface-hub", "gradio", "pytest", "hypothesis"]
print(f"   Python {sys.version.split()[0]}: " + ", ".join(f"{n} {version(n)}" for n in names))
import gradio  # must import: without it the tab's tests would be skipped, not run
import torch
print(f"   gradio {gradio.__version__} imports (Neo's Pillow {version('Pillow')} over gradio's own pillow<11, as Neo has it)")
print(f"   torch {torch.__version__} (CUDA build {torch.version.cuda}, run on CPU: cuda available = {torch.cuda.is_available()})")
EOF

# the test command is read from the README so the two cannot drift apart; run with the venv's python
test_cmd=$(sed -n '/<!-- test-command -->/,/<!-- \/test-command -->/p' README.md | grep -m1 '^python ')
[ -n "$test_cmd" ] || { echo "README.md has no test command between the markers" >&2; exit 1; }
test_cmd="$venv/bin/python ${test_cmd#python }"
echo "+ $test_cmd"
t0=$SECONDS
eval "$test_cmd"
echo "py313: the whole suite passed under Python 3.13 in $((SECONDS - t0)) s (total $((SECONDS - start)) s)"
