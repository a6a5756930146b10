#!/usr/bin/env bash
# The merge tab under both webuis' gradio: 3.41.2 (A1111 1.10.1) and 4.40.0 (Forge), each in its own
# virtualenv. The venvs see the installed packages (--system-site-packages), so torch is reused and
# only gradio and the web stack it needs are downloaded, pinned as each webui pins them.
#
#   .ci/ui_check.sh          build the tab on tiny models and run tests/test_ui*.py in each venv
#   .ci/ui_check.sh --e2e    also drive the standalone tab in headless Chromium (tests/e2e) in each
#                            (needs Debian's chromium at /usr/bin/chromium; playwright is pip-installed,
#                            `playwright install` is never run)
#
# Venvs are kept in $BLOCKMERGE_CI_VENVS (default ~/.cache/blockmerge/ci-venvs) and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
python=${PYTHON:-python}
venvs=${BLOCKMERGE_CI_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/blockmerge/ci-venvs}
e2e=0
for arg in "$@"; do
    case $arg in
        --e2e) e2e=1 ;;
        *) echo "usage: $0 [--e2e]" >&2; exit 2 ;;
    esac
done
export GRADIO_ANALYTICS_ENABLED=False PIP_DISABLE_PIP_VERSION_CHECK=1

# From each webui's requirements_versions.txt (and what its pins resolve to); without them pip picks
# today's fastapi/starlette/huggingface-hub, which these gradio releases no longer run on.
declare -A pins=(
    [3.41.2]="gradio==3.41.2 gradio-client==0.5.0 fastapi==0.94.0 starlette==0.26.1 pydantic==1.10.21
              httpx==0.24.1 httpcore==0.17.3 anyio==3.7.1 uvicorn==0.30.6 websockets==11.0.3
              huggingface-hub==0.26.2 numpy==1.26.2 Pillow==9.5.0"
    [4.40.0]="-r $root/requirements-ui.txt"  # the README's standalone install, tested here
)

pip_install() {  # quiet when it works, the whole log when it does not
    local venv=$1 log
    shift
    log=$(mktemp)
    if ! "$venv/bin/python" -m pip install --quiet "$@" >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
}

models=$(mktemp -d)
trap 'rm -rf "$models"' EXIT
start=$SECONDS
for version in 3.41.2 4.40.0; do
    t0=$SECONDS
    venv=$venvs/gradio-$version
    echo "== gradio $version ($venv)"
    [ -x "$venv/bin/python" ] || "$python" -m venv --system-site-packages "$venv"
    # shellcheck disable=SC2086  # the pins are words
    pip_install "$venv" ${pins[$version]} $([ $e2e = 1 ] && echo playwright)
    (
        cd "$root"
        PYTHONPATH=$root "$venv/bin/python" - "$version" "$models" <<'EOF'
import os, sys
version, models = sys.argv[1], sys.argv[2]
import gradio as gr
assert gr.__version__ == version, f"gradio {gr.__version__} is installed, expected {version}"
from tests.synth import write_checkpoint
from lib_merge.ui.merge_tab import build_merge_tab
from lib_merge.ui.standalone import StandaloneHost, build_app
from lib_merge.ui.state import TabState
for name, seed in (("A", 1), ("B", 2)):
    if not os.path.exists(f"{models}/{name}.safetensors"):
        write_checkpoint(f"{models}/{name}.safetensors", "sd1", seed=seed)
host, state = StandaloneHost(models), TabState(data_dir=os.path.join(models, "data"))
tab = build_merge_tab(host, state)           # what the webui's on_ui_tabs returns
page = build_app(host, state)                # what `python -m lib_merge ui` serves
config = page.get_config_file()
ids = {c.get("props", {}).get("elem_id") for c in config["components"]}
missing = {"blockmerge_merge_save", "blockmerge_mbw_OUT11", "blockmerge_recipe", "blockmerge_history"} - ids
assert not missing, missing
print(f"   built: {len(config['components'])} components, {len(config['dependencies'])} events")
EOF
    )
    "$venv/bin/python" -m pytest -q -p no:warnings tests/test_ui*.py tests/test_webui_ui.py tests/test_webui_api.py tests/test_webui_analyzer_ui.py
    if [ $e2e = 1 ]; then
        "$venv/bin/python" -m pytest -q -p no:warnings -m e2e -rs tests/e2e
    fi
    echo "   gradio $version: $((SECONDS - t0)) s"
done
echo "ui_check: both gradio versions passed in $((SECONDS - start)) s"
