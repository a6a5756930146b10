"""modules/script_callbacks.py (the subset BlockMerge uses). Callbacks are kept in lists per kind;
`clear_callbacks()` runs at every full UI reload, a body-only reload does not clear them."""
import inspect
from collections import namedtuple

ScriptCallback = namedtuple("ScriptCallback", ["script", "callback", "name"])


class CFGDenoiserParams:
    def __init__(self, x, image_cond, sigma, sampling_step, total_sampling_steps, text_cond, text_uncond, denoiser=None):
        self.x, self.image_cond, self.sigma = x, image_cond, sigma
        self.sampling_step, self.total_sampling_steps = sampling_step, total_sampling_steps
        self.text_cond, self.text_uncond, self.denoiser = text_cond, text_uncond, denoiser


_KINDS = ("callbacks_app_started", "callbacks_model_loaded", "callbacks_ui_tabs", "callbacks_ui_settings",
          "callbacks_cfg_denoiser", "callbacks_script_unloaded", "callbacks_before_ui", "callbacks_infotext_pasted")
callback_map = {k: [] for k in _KINDS}


def clear_callbacks():
    for callback_list in callback_map.values():
        callback_list.clear()


def add_callback(callbacks, fun, *, name=None, category="unknown", filename=None):
    if filename is None:
        stack = [x for x in inspect.stack() if x.filename != __file__]
        filename = stack[0].filename if stack else "unknown file"
    callbacks.append(ScriptCallback(filename, fun, name or f"{filename}/{category}"))


def remove_callbacks_for_function(callback_func):
    for callback_list in callback_map.values():
        for cb in [cb for cb in callback_list if cb.callback == callback_func]:
            callback_list.remove(cb)


def _run(kind, *args):
    from modules import errors
    for c in callback_map[kind]:
        try:
            c.callback(*args)
        except Exception:
            errors.report(f"Error executing callback {c.name} for {kind}", exc_info=True)


def app_started_callback(demo, app):
    _run("callbacks_app_started", demo, app)


def model_loaded_callback(sd_model):
    _run("callbacks_model_loaded", sd_model)


def ui_tabs_callback():
    res = []
    for c in callback_map["callbacks_ui_tabs"]:
        res += c.callback() or []
    return res


def ui_settings_callback():
    _run("callbacks_ui_settings")


def cfg_denoiser_callback(params):
    _run("callbacks_cfg_denoiser", params)


def script_unloaded_callback():
    _run("callbacks_script_unloaded")


def on_app_started(callback, *, name=None):
    add_callback(callback_map["callbacks_app_started"], callback, name=name, category="app_started")


def on_model_loaded(callback, *, name=None):
    add_callback(callback_map["callbacks_model_loaded"], callback, name=name, category="model_loaded")


def on_ui_tabs(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_tabs"], callback, name=name, category="ui_tabs")


def on_ui_settings(callback, *, name=None):
    add_callback(callback_map["callbacks_ui_settings"], callback, name=name, category="ui_settings")


def on_cfg_denoiser(callback, *, name=None):
    add_callback(callback_map["callbacks_cfg_denoiser"], callback, name=name, category="cfg_denoiser")


def on_script_unloaded(callback, *, name=None):
    add_callback(callback_map["callbacks_script_unloaded"], callback, name=name, category="script_unloaded")


def infotext_pasted_callback(infotext, params):
    _run("callbacks_infotext_pasted", infotext, params)


def on_infotext_pasted(callback, *, name=None):
    add_callback(callback_map["callbacks_infotext_pasted"], callback, name=name, category="infotext_pasted")


def before_ui_callback():
    _run("callbacks_before_ui")


def on_before_ui(callback, *, name=None):
    add_callback(callback_map["callbacks_before_ui"], callback, name=name, category="before_ui")
