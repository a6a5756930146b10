"""modules/shared.py: options, command-line options, the job state and the loaded model.

In A1111 `shared.sd_model` is a property that loads the selected checkpoint when none is loaded;
here it is a plain attribute the tests set (or None).
"""
import types

from modules import paths_internal


class OptionInfo:
    def __init__(self, default=None, label="", component=None, component_args=None, onchange=None, section=None,
                 refresh=None, comment_before="", comment_after="", infotext=None, restrict_api=False, category_id=None):
        self.default, self.label, self.component, self.component_args = default, label, component, component_args
        self.section = section
        self.comment_after = comment_after

    def info(self, info):
        self.comment_after += f"<span class='info'>({info})</span>"
        return self


class Options:
    def __init__(self, defaults):
        object.__setattr__(self, "data", dict(defaults))
        object.__setattr__(self, "data_labels", {})

    def __getattr__(self, item):
        data = object.__getattribute__(self, "data")
        if item in data:
            return data[item]
        labels = object.__getattribute__(self, "data_labels")
        if item in labels:
            return labels[item].default
        raise AttributeError(item)

    def __setattr__(self, key, value):
        self.data[key] = value

    def add_option(self, key, info):
        self.data_labels[key] = info
        if key not in self.data and not getattr(info, "do_not_save", False):
            self.data.setdefault(key, info.default)


opts = Options({
    "sd_model_checkpoint": None, "sd_checkpoint_cache": 0, "lora_in_memory_limit": 0, "lora_functional": False,
    "persistent_cond_cache": True, "outdir_samples": "", "outdir_txt2img_samples": "out/txt2img",
    "outdir_grids": "", "outdir_txt2img_grids": "out/grids", "hires_fix_use_firstpass_conds": False,
    "sd_lora": "None", "lora_add_hashes_to_infotext": True, "extra_networks_default_multiplier": 1.0,
    "grid_save": True, "grid_format": "png", "samples_format": "png",
    "temp_dir": "",  # A1111 1.10 / Forge modules/shared_options.py: "" = the system temp folder (Neo: see harness)
})
cmd_opts = types.SimpleNamespace(ckpt_dir=None, data_dir=paths_internal.data_path, lora_dir=None, ckpt=None)


class State:
    def __init__(self):
        self.interrupted = False
        self.skipped = False
        self.stopping_generation = False
        self.job = ""
        self.job_count = 0
        self.job_no = 0
        self.sampling_step = 0
        self.sampling_steps = 0
        self.begun = 0
        self.textinfo = None

    def begin(self, job="(unknown)"):
        self.interrupted = self.skipped = self.stopping_generation = False
        self.job, self.job_count, self.job_no, self.sampling_step = job, -1, 0, 0
        self.begun += 1

    def end(self):
        self.job = ""
        self.job_count = 0

    def interrupt(self):
        self.interrupted = True

    def skip(self):
        self.skipped = True

    def stop_generating(self):
        self.stopping_generation = True

    def nextjob(self):
        self.job_no += 1
        self.sampling_step = 0


state = State()
sd_model = None
device = "cpu"
