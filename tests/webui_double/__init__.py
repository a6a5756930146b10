"""A small, faithful double of the webui API surface BlockMerge uses (see harness.py and WEBUI.md).

`common/` holds the fake `modules` package (A1111 and Forge share module names; behaviour that
differs follows whether `modules_forge` is importable, as in the real webuis), `a1111/` the builtin
Lora extension of A1111 1.10, `forge/` the Forge-only packages and its builtin LoRA extension.
Nothing here is webui code: it is written from WEBUI.md and reading the real sources.
"""
