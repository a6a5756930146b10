"""The merge tab: Gradio components usable inside the webui and standalone (STYLE.md).

Plain modules, importing neither gradio nor the webui, hold the logic and are unit-tested without a
browser: `form` (the form as one value, its recipe and output path), `mbw` (sliders <-> weight
text, presets), `history`, `state` (what one tab owns), `actions` (what the buttons do), `recipes`
(recipes back into the form), `labels` (what people read vs the ids the code uses).
`merge_tab` (layout and wiring), `events` (handlers) and `compat` (gradio 3.41 vs 4.x) are the
Gradio layer; `standalone` serves the tab without a webui. `host` is the contract with the hosts.
"""
