"""Adapters to the running webui (AUTOMATIC1111 1.10 and Forge): the only code that imports `modules`.

Nothing here imports the webui at module import time except the modules whose names say so
(`a1111`, `forge`, `lbw_script`); `detect` picks the webui once, by what is importable (WEBUI.md §0).
"""
