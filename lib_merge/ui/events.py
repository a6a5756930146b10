"""The tab's event handlers: Gradio values in, `gr.update`s out, the plain modules in between.

Every handler catches MergeError and shows it twice — in the status box and as a toast — and
never lets a user mistake become a traceback. A bug (any other exception) is logged with its
traceback and still shown in the tab.
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Callable, Sequence

import gradio as gr

from ..errors import Cancelled, MergeError
from ..methods import resolve
from . import actions, labels, mbw
from .form import FormValues
from .history import entry_id, entry_label
from .host import Host
from .labels import ARCH_LABELS, TARGET_LABELS, to_id
from .recipes import form_from_history, form_from_recipe, recipe_from_file
from .state import TabState

log = logging.getLogger("lib_merge")
N_SLIDERS = len(mbw.SLIDER_BLOCKS)


def md_escape(text: str) -> str:
    """Plain text shown in a Markdown box as written (block names like ALL_B, `*`, `<`...)."""
    return re.sub(r"([\\`*_{}\[\]<>#|~])", r"\\\1", text)


def _same() -> Any:
    return gr.update()


def for_outputs(values: Sequence[Any], n_out: int, name: str = "handler") -> Any:
    """What Gradio expects back from a handler wired to `n_out` outputs: the lone value for one output
    (Gradio 3.41 and 4.x alike unpack a returned list only when there are several outputs; with one,
    the list itself would become the component's value), the list for several."""
    if not isinstance(values, (list, tuple)) or len(values) != n_out:
        raise TypeError(f"{name} returned {type(values).__name__} of length "
                        f"{len(values) if isinstance(values, (list, tuple)) else '-'}, expected a list of {n_out}")
    return values[0] if n_out == 1 else list(values)


class Handlers:
    def __init__(self, host: Host, state: TabState):
        self.host = host
        self.state = state

    # --- helpers
    def fail(self, err: BaseException) -> str:
        """The status line for an error, after raising the toast."""
        if isinstance(err, MergeError):
            msg = labels.user_message(err)
        else:
            log.exception("blockmerge: unexpected error in the merge tab")
            msg = f"internal error ({type(err).__name__}: {err}); the details are in the console"
        gr.Warning(msg)
        return f"✗ {md_escape(msg)}"

    def guarded(self, fn: Callable[..., Sequence[Any]], outputs: Sequence[Any], status: Any = None) -> Callable[..., Any]:
        """Wrap a handler (without a Progress argument) for the components it updates: on error only the
        `status` output (default: the first) shows the message. A guarded handler returns one item per
        output, always as a list; the wrapper hands Gradio the shape it expects for that many outputs
        (`for_outputs`), so a one-output event never gets a one-item list as its value."""
        n_out = len(outputs)
        status_at = 0 if status is None else next(i for i, o in enumerate(outputs) if o is status)

        def run(*args: Any) -> Any:
            try:
                out = fn(*args)
            except Exception as e:  # noqa: BLE001 - shown in the tab, bugs logged with a traceback
                out = [_same() for _ in range(n_out)]
                out[status_at] = self.fail(e)
            return for_outputs(out, n_out, getattr(fn, "__name__", "handler"))
        run.__name__ = getattr(fn, "__name__", "handler")
        return run

    def on(self, event: Callable[..., Any], fn: Callable[..., Sequence[Any]], outputs: Sequence[Any],
           inputs: Sequence[Any] = (), status: Any = None, **kw: Any) -> Any:
        """`event(fn)` for these outputs, guarded: the one way the tab wires a list-returning handler."""
        return event(self.guarded(fn, outputs, status), inputs=list(inputs), outputs=list(outputs), **kw)

    def model_choices(self) -> list[str]:
        return list(self.host.checkpoints())

    # --- models
    def refresh_models(self) -> list:
        self.host.refresh()
        choices = self.model_choices()
        return [gr.update(choices=choices) for _ in range(4)] + [f"Found {len(choices)} models."]

    def models_changed(self) -> list:
        self.host.refresh()  # a saved merge may have landed in the models folder
        choices = self.model_choices()
        return [gr.update(choices=choices) for _ in range(4)]

    def detect_arch(self, model_a: str | None) -> list:
        if not model_a:
            return [_same(), _same()]
        try:
            layout, label = mbw.detect_editor_arch(self.host.checkpoint_path(model_a))
        except MergeError as e:
            return [_same(), f"⚠ model A: {md_escape(labels.user_message(e))}"]
        if layout is None:  # Flux-like with other block counts: the 61 sliders are Flux.1's
            return [_same(), f"⚠ Model A is {md_escape(label)}: the sliders are for Flux.1's 19 + 38 blocks. Type "
                             "one value per block (CLIP, T5, IN, D00.., S00.., OUT) or FLUXALL in the weight text."]
        return [gr.update(value=ARCH_LABELS[layout]), f"Model A is {md_escape(label)}: the sliders show its blocks."]

    def calc_changed(self, calc_label: str) -> Any:
        calc = to_id(labels.CALC_LABELS, calc_label, "calc mode")
        if calc == "normal":
            return _same()
        mode = resolve(None, calc).mode
        return gr.update(value=labels.MODE_LABELS[mode]) if mode in labels.MODE_LABELS else _same()

    # --- block weights
    def _sliders(self, text: str, arch_id: str, shown: bool = False) -> list:
        """Slider updates for a weight text, and the note under it."""
        book = self.state.presets()
        visible = mbw.shown_blocks(arch_id)
        try:
            vals = mbw.text_to_sliders(text, arch_id, book)
        except MergeError:
            vals = [None] * N_SLIDERS
        ups = []
        for block, v in zip(mbw.SLIDER_BLOCKS, vals):
            kw: dict[str, Any] = {} if v is None else {"value": round(v, 4)}  # what a slider can show
            if shown:
                kw["visible"] = block in visible
            ups.append(gr.update(**kw))
        return ups + [md_escape(mbw.describe_text(text, arch_id, book))]

    def slider_rows(self, arch_label: str) -> list:
        """Show the slider row of the layout: SD's 26 (SD1, SDXL) or Flux's 61."""
        flux = to_id(ARCH_LABELS, arch_label, "block layout") == "flux"
        return [gr.update(visible=not flux), gr.update(visible=flux)]

    def layout_changed(self, arch_label: str, target_label: str, alpha_text: str, beta_text: str) -> list:
        arch_id = to_id(ARCH_LABELS, arch_label, "block layout")
        text = alpha_text if to_id(TARGET_LABELS, target_label, "slider target") == "alpha" else beta_text
        return self._sliders(text or "", arch_id, shown=True)

    def text_typed(self, which: str) -> Callable[..., list]:
        def typed(arch_label: str, target_label: str, text: str) -> list:
            arch_id = to_id(ARCH_LABELS, arch_label, "block layout")
            if to_id(TARGET_LABELS, target_label, "slider target") != which:
                return [_same()] * N_SLIDERS + [md_escape(mbw.describe_text(text or "", arch_id, self.state.presets()))]
            return self._sliders(text or "", arch_id)
        typed.__name__ = f"{which}_typed"
        return typed

    def slider_released(self, arch_label: str, target_label: str, *values: float) -> list:
        arch_id = to_id(ARCH_LABELS, arch_label, "block layout")
        text = mbw.sliders_to_text([float(v) for v in values], arch_id)
        note = md_escape(mbw.describe_text(text, arch_id))
        if to_id(TARGET_LABELS, target_label, "slider target") == "alpha":
            return [text, _same(), note]
        return [_same(), text, note]

    def preset_picked(self, name: str | None, arch_label: str, target_label: str) -> list:
        if not name:
            return [_same(), _same()] + [_same()] * N_SLIDERS + [_same()]
        arch_id = to_id(ARCH_LABELS, arch_label, "block layout")
        alpha = to_id(TARGET_LABELS, target_label, "slider target") == "alpha"
        return [name if alpha else _same(), _same() if alpha else name] + self._sliders(name, arch_id)

    def save_preset(self, name: str, arch_label: str, target_label: str, alpha_text: str, beta_text: str) -> list:
        arch_id = to_id(ARCH_LABELS, arch_label, "block layout")
        text = alpha_text if to_id(TARGET_LABELS, target_label, "slider target") == "alpha" else beta_text
        status = mbw.save_preset(self.state.presets_file, name or "", text or "", arch_id, self.state.presets())
        choices = mbw.preset_names(self.state.presets(), arch_id)
        return [f"✓ {md_escape(status)}", gr.update(choices=choices)]

    def preset_choices(self, arch_label: str) -> Any:
        arch_id = to_id(ARCH_LABELS, arch_label, "block layout")
        return gr.update(choices=mbw.preset_names(self.state.presets(), arch_id))

    def fill_random(self, token: str, arch_label: str, target_label: str) -> list:
        arch_id = to_id(ARCH_LABELS, arch_label, "block layout")
        tok = (token or "R").strip()[:1].upper()
        text = ",".join([tok] * len(mbw.editor_arch(arch_id).blocks))
        note = md_escape(mbw.describe_text(text, arch_id))
        if to_id(TARGET_LABELS, target_label, "slider target") == "alpha":
            return [text, _same(), note]
        return [_same(), text, note]

    # --- merges (progress first: gradio inserts it by position, before the *values)
    def _merge(self, run: Callable[[FormValues, Any], actions.Outcome], values: tuple, progress: Any,
               n_extra: int = 0) -> list:
        try:
            form = FormValues.from_ui(values)
            cb = actions.Throttled(lambda done, total, what: progress(done / total if total else 0, desc=what))
            out = run(form, cb)
        except Cancelled:
            return ["■ Stopped: nothing was written or loaded.", _same(), _same()] + [_same()] * n_extra
        except Exception as e:  # noqa: BLE001 - see fail()
            return [self.fail(e), _same(), _same()] + [_same()] * n_extra
        hist = self.history_choices()
        extra = [out.images, out.infotext][:n_extra]
        return [out.status, out.recipe_json, hist] + extra

    def merge_save(self, progress=gr.Progress(), *values: Any) -> list:
        return self._merge(lambda f, cb: actions.merge_and_save(self.host, self.state, f, cb), values, progress)

    def merge_load(self, progress=gr.Progress(), *values: Any) -> list:
        return self._merge(lambda f, cb: actions.merge_and_load(self.host, self.state, f, cb), values, progress)

    def merge_generate(self, progress=gr.Progress(), gen_json: str = "", *values: Any) -> list:
        def run(f: FormValues, cb: Any) -> actions.Outcome:
            settings = actions.gen_settings(gen_json)
            return actions.merge_and_generate(self.host, self.state, f, settings, cb)
        return self._merge(run, values, progress, n_extra=2)

    def restore(self) -> str:
        return f"✓ {md_escape(self.host.restore() or 'Restored the original checkpoint.')}"

    def stop(self) -> str:
        if self.state.stop():
            return "■ Stopping… the merge ends at the next tensor and writes nothing."
        return "Nothing is running."

    # --- history
    def history_labels(self) -> list[str]:
        return [entry_label(e) for e in self.state.history.entries()]

    def history_choices(self) -> Any:
        return gr.update(choices=self.history_labels())

    def history_show(self, label: str | None) -> str:
        if not label:
            return ""
        return json.dumps(self.state.history.get(entry_id(label)), indent=2, ensure_ascii=False)

    def history_load(self, label: str | None) -> list:
        form, notes = form_from_history(self.state.history.get(entry_id(label)), self.host)
        return form.to_ui() + [self._loaded(f"past merge {entry_id(label)}", notes)]

    # --- recipe from a file
    def file_picked(self, name: str | None) -> list:
        return self._file(self.host.checkpoint_path(name) if name else None)

    def file_dropped(self, value: Any) -> list:
        from .compat import file_path
        return self._file(file_path(value))

    def _file(self, path: str | None) -> list:
        if not path:
            return ["", "", None]
        fr = recipe_from_file(path)
        return [md_escape_keep_bold(fr.summary), fr.recipe_json, {"recipe": fr.recipe, "models": fr.models}]

    def file_load(self, stored: dict | None) -> list:
        if not stored or not stored.get("recipe"):
            raise MergeError("no recipe is shown", "pick or drop a merged .safetensors file first")
        form, notes = form_from_recipe(stored["recipe"], self.host, stored.get("models"))
        return form.to_ui() + [self._loaded("the file's recipe", notes)]

    def paste_load(self, text: str | None) -> list:
        """An image's parameters, as the webui shows or pastes them: the recipe of the merge it was made
        from (`BlockMerge recipe`, written for merges loaded in memory) into the form."""
        from ..merge.identity import recipe_from_infotext
        form, notes = form_from_recipe(recipe_from_infotext(text or ""), self.host)
        return form.to_ui() + [self._loaded("the image's recipe", notes)]

    @staticmethod
    def _loaded(what: str, notes: list[str]) -> str:
        return f"✓ Loaded {md_escape(what)} into the form." + "".join(f"\n\n- ⚠ {md_escape(n)}" for n in notes)


def md_escape_keep_bold(text: str) -> str:
    """Escape a summary but keep its **bold** parts (written by recipes.py, around file names)."""
    parts = text.split("**")
    return "**".join(md_escape(p) for p in parts)
