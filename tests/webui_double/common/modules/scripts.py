"""modules/scripts.py (the subset BlockMerge uses): Script, the runner's hook dispatch, script loading.

As in the webui: a runner calls a hook only on scripts whose class overrides it, passes
`p.script_args[args_from:args_to]`, and catches and logs every exception (errors.report), so a
failing hook does not stop the job. Loading runs each file as a module named after the file,
with the extension root on sys.path only while that file is imported (A1111).
"""
import os
import sys
from collections import namedtuple

from modules import errors, script_loading

AlwaysVisible = object()
ScriptClassData = namedtuple("ScriptClassData", ["script_class", "path", "basedir", "module"])
scripts_data = []
current_basedir = None


def basedir():
    return current_basedir


class Script:
    name = None
    filename = None
    args_from = None
    args_to = None
    alwayson = False
    is_txt2img = False
    is_img2img = False
    infotext_fields = None
    paste_field_names = None
    setup_for_ui_only = False

    def title(self):
        raise NotImplementedError()

    def ui(self, is_img2img):
        pass

    def show(self, is_img2img):
        return True

    def setup(self, p, *args):
        pass

    def before_process(self, p, *args):
        pass

    def process(self, p, *args):
        pass

    def before_process_batch(self, p, *args, **kwargs):
        pass

    def after_extra_networks_activate(self, p, *args, **kwargs):
        pass

    def process_batch(self, p, *args, **kwargs):
        pass

    def process_before_every_sampling(self, p, *args, **kwargs):
        pass

    def before_hr(self, p, *args):
        pass

    def postprocess_batch(self, p, *args, **kwargs):
        pass

    def postprocess(self, p, processed, *args):
        pass


class ScriptRunner:
    def __init__(self):
        self.scripts = []
        self.alwayson_scripts = []
        self.selectable_scripts = []

    def ordered_scripts(self, method_name):
        return [s for s in self.alwayson_scripts
                if getattr(s.__class__, method_name, None) is not getattr(Script, method_name, None)]

    def _each(self, method_name, p, *args, **kwargs):
        for script in self.ordered_scripts(method_name):
            try:
                script_args = p.script_args[script.args_from:script.args_to]
                if method_name == "postprocess":
                    getattr(script, method_name)(p, *args, *script_args)
                else:
                    getattr(script, method_name)(p, *script_args, **kwargs)
            except Exception:
                errors.report(f"Error running {method_name}: {script.filename}", exc_info=True)

    def setup_scrips(self, p, *, is_ui=True):
        self._each("setup", p)

    def before_process(self, p):
        self._each("before_process", p)

    def process(self, p):
        self._each("process", p)

    def before_process_batch(self, p, **kwargs):
        self._each("before_process_batch", p, **kwargs)

    def after_extra_networks_activate(self, p, **kwargs):
        self._each("after_extra_networks_activate", p, **kwargs)

    def process_batch(self, p, **kwargs):
        self._each("process_batch", p, **kwargs)

    def process_before_every_sampling(self, p, **kwargs):
        self._each("process_before_every_sampling", p, **kwargs)

    def before_hr(self, p):
        self._each("before_hr", p)

    def postprocess_batch(self, p, images, **kwargs):
        self._each("postprocess_batch", p, images=images, **kwargs)

    def postprocess(self, p, processed):
        self._each("postprocess", p, processed)


def load_script_file(ext_root, path):
    """One iteration of load_scripts(): the root on sys.path during the import only; Script and
    subclasses found in the module are registered."""
    global current_basedir
    syspath = sys.path
    try:
        sys.path = [ext_root] + sys.path
        current_basedir = ext_root
        module = script_loading.load_module(path)
        for obj in module.__dict__.values():
            if type(obj) is type and issubclass(obj, Script) and obj is not Script:
                scripts_data.append(ScriptClassData(obj, path, ext_root, module))
        return module
    finally:
        sys.path = syspath
        current_basedir = None


def runner_with(script_class, args, *, tab="txt2img"):
    """A runner as ui.create_ui builds it for one tab: one instance, args after the selector slot."""
    runner = ScriptRunner()
    s = script_class()
    s.filename = os.path.abspath(sys.modules[script_class.__module__].__file__) if script_class.__module__ in sys.modules else "?"
    s.args_from, s.args_to = 1, 1 + len(args)
    s.is_txt2img, s.is_img2img = tab == "txt2img", tab == "img2img"
    runner.scripts = [s]
    runner.alwayson_scripts = [s]
    return runner, [0, *args]
