"""The LoRA block-weight accordion on its own page, as the webui shows it under txt2img, for the browser
test (tests/e2e/test_lbw_accordion_e2e.py): real preset files in a folder, the webui's own file tools.
    python tests/e2e/lbw_app.py DIR PORT
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import gradio as gr  # noqa: E402

from lib_merge.ui.lbw_accordion import build_lbw_inputs  # noqa: E402
from lib_merge.webui.lbw_files import PresetFiles  # noqa: E402


def main() -> None:
    folder, port = sys.argv[1], int(sys.argv[2])
    files = PresetFiles(lambda: os.path.join(folder, "lbw_presets.txt"),
                        lambda: os.path.join(folder, "lbwe_presets.txt"))
    with gr.Blocks(analytics_enabled=False) as demo:
        with gr.Column(elem_id="lbw_page"):
            build_lbw_inputs(files, tab="txt2img")
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=False)


if __name__ == "__main__":
    main()
