"""modules/script_loading.py: a script file runs as a module named after the file, not in sys.modules."""
import importlib.util
import os


def load_module(path):
    module_spec = importlib.util.spec_from_file_location(os.path.basename(path), path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module
