"""modules/processing.py: the generation loop with the hook order of WEBUI.md §3, for both webuis.

A1111 1.10: per batch `reload_model_weights()`, `before_process_batch`, parse, `extra_networks.activate`
(ending in `after_extra_networks_activate`), `process_batch`, `setup_conds`, sampling; with hires fix a
second activation before the hires pass (`is_hr_pass` True); `setup_conds` activates the hires
networks and the first-pass ones again only in lowvram mode.
Forge: `forge_objects` is reset from `forge_objects_original` before the batch and from
`forge_objects_after_applying_lora` after the activation, before every sampling run and in the hires
pass between the two `process_before_every_sampling` calls; `setup_conds` activates hires and
first-pass networks again unless `hires_fix_use_firstpass_conds`; `need_global_unload` unloads all
models and clears the prompt cache at the next generation.

The sampler calls the denoiser once per step (twice for second-order samplers, except the last
step); `state.sampling_step` is set by the sampler callback after a step ends, as in k-diffusion.
Every UNet evaluation records the weights the model computes with (`p.unet_snapshots`), every
text-encoder run the weights of the encoder (`p.te_snapshots`), so tests read effective strengths.

Images are the strings "image n.i" unless `picture_images` is on: then each image is a PIL picture
of what the model computed with (see `picture`), so a render's pixels depend on the LoRA strength
each block really got, and `rendered` lists every picture made.
"""
import importlib.util
import re
from dataclasses import dataclass, field, fields

from modules import extra_networks, script_callbacks, sd_models, shared
from modules.shared import opts, state

FORGE = importlib.util.find_spec("modules_forge") is not None
if FORGE:  # lllyasviel Forge (dfdcbab6) and Neo (283cb2c4) both: `from modules.sd_models import ..., forge_model_reload`
    from modules.sd_models import forge_model_reload
need_global_unload = False
picture_images = False  # the harness turns it on (Webui.use_pictures); off: "image n.i" strings
rendered = []  # with pictures: {"prompt", "seed", "bands": {block: (rows, changed columns)}} per image


class InterruptedException(BaseException):
    pass


@dataclass(repr=False)
class StableDiffusionProcessing:
    prompt: str = ""
    negative_prompt: str = ""
    styles: list = None
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0
    sampler_name: str = "Euler"
    scheduler: str = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 4
    cfg_scale: float = 7.0
    width: int = 64
    height: int = 64
    outpath_samples: str = None
    outpath_grids: str = None
    do_not_save_samples: bool = False
    do_not_save_grid: bool = False
    extra_generation_params: dict = None
    override_settings: dict = None
    disable_extra_networks: bool = False
    scripts_value: object = field(default=None, init=False)
    script_args_value: list = field(default=None, init=False)
    scripts_setup_complete: bool = field(default=False, init=False)
    is_api: bool = field(default=False, init=False)
    sd_model_name: str = field(default=None, init=False)  # set by process_images_inner, for the infotext
    sd_model_hash: str = field(default=None, init=False)

    cached_c = [None, None, None] if FORGE else [None, None]
    cached_uc = [None, None, None] if FORGE else [None, None]

    def __post_init__(self):
        self.extra_generation_params = self.extra_generation_params or {}
        self.override_settings = self.override_settings or {}
        self.comments = {}
        self.cached_c = StableDiffusionProcessing.cached_c
        self.cached_uc = StableDiffusionProcessing.cached_uc
        self.is_hr_pass = False
        self.iteration = 0
        self.prompts = self.seeds = self.subseeds = None
        self.extra_network_data = None
        self.trace = []
        self.unet_snapshots = []  # (pass, step index from 0, {layer: weight})
        self.te_snapshots = []  # (pass, {layer: weight}) as returned by the cond cache
        self.closed = False

    @property
    def sd_model(self):
        return shared.sd_model

    @sd_model.setter
    def sd_model(self, value):
        pass

    @property
    def scripts(self):
        return self.scripts_value

    @scripts.setter
    def scripts(self, value):
        self.scripts_value = value
        if self.scripts_value and self.script_args_value and not self.scripts_setup_complete:
            self.setup_scripts()

    @property
    def script_args(self):
        return self.script_args_value

    @script_args.setter
    def script_args(self, value):
        self.script_args_value = value
        if self.scripts_value and self.script_args_value and not self.scripts_setup_complete:
            self.setup_scripts()

    def setup_scripts(self):
        self.scripts_setup_complete = True
        self.scripts.setup_scrips(self, is_ui=not self.is_api)

    def comment(self, text):
        self.comments[text] = 1

    def clear_prompt_cache(self):  # Forge
        self.cached_c = [None, None, None]
        self.cached_uc = [None, None, None]
        StableDiffusionProcessing.cached_c = [None, None, None]
        StableDiffusionProcessing.cached_uc = [None, None, None]

    def close(self):
        self.closed = True
        if not opts.persistent_cond_cache:
            StableDiffusionProcessing.cached_c = [None, None]
            StableDiffusionProcessing.cached_uc = [None, None]

    def setup_prompts(self):
        n = self.batch_size * self.n_iter
        self.all_prompts = [self.prompt] * n
        self.all_negative_prompts = [self.negative_prompt] * n
        base = self.seed if self.seed >= 0 else 1234
        self.all_seeds = [base + i for i in range(n)]
        self.all_subseeds = [0] * n

    def parse_extra_network_prompts(self):
        self.prompts, self.extra_network_data = extra_networks.parse_prompts(self.prompts)

    def text_encoder_run(self):
        if FORGE:
            from backend import memory_management
            clip = self.sd_model.forge_objects.clip
            memory_management.load_model_gpu(clip.patcher)
            return {k: v.detach().clone() for k, v in clip.cond_stage_model.named_parameters()}
        return self.sd_model.run_text_encoder()

    def get_conds_with_caching(self, prompts, caches, extra_network_data, what):
        params = (tuple(prompts), self.steps, id(self.sd_model.sd_checkpoint_info),
                  tuple((k, tuple(tuple(x.items) for x in v)) for k, v in sorted((extra_network_data or {}).items())))
        for cache in caches:
            if cache[0] is not None and cache[0] == params:
                self.te_snapshots.append((what, cache[1]))
                return cache[1]
        cache = caches[0]
        cache[1] = self.text_encoder_run()
        cache[0] = params
        self.te_snapshots.append((what, cache[1]))
        return cache[1]

    def setup_conds(self):
        self.c = self.get_conds_with_caching(self.prompts, [self.cached_c], self.extra_network_data, "first")

    def unet_run(self):
        if FORGE:
            return {k: v.detach().clone() for k, v in self.sd_model.forge_objects.unet.model.named_parameters()}
        return self.sd_model.run_unet()


class CFGDenoiser:
    def __init__(self, p):
        self.p = p
        self.step = 0
        self.steps = None
        self.total_steps = None

    def forward(self, pass_name, i):
        if state.interrupted or state.skipped:
            raise InterruptedException
        params = script_callbacks.CFGDenoiserParams(None, None, None, state.sampling_step, state.sampling_steps,
                                                    None, None, self)
        script_callbacks.cfg_denoiser_callback(params)
        self.p.unet_snapshots.append((pass_name, i, self.p.unet_run()))
        self.step += 1


def run_sampler(p, steps, pass_name):
    second_order = "heun" in (p.sampler_name or "").lower()
    d = CFGDenoiser(p)
    d.steps, d.total_steps = steps, steps * 2 if second_order else steps
    state.sampling_steps, state.sampling_step = steps, 0
    try:
        for i in range(steps):
            for _ in range(2 if second_order and i < steps - 1 else 1):
                d.forward(pass_name, i)
            state.sampling_step = i  # the sampler's callback, after the step
    except InterruptedException:
        pass


@dataclass(repr=False)
class StableDiffusionProcessingTxt2Img(StableDiffusionProcessing):
    enable_hr: bool = False
    denoising_strength: float = 0.75
    hr_scale: float = 2.0
    hr_upscaler: str = None
    hr_second_pass_steps: int = 0
    hr_prompt: str = ""
    hr_negative_prompt: str = ""
    if FORGE:
        hr_additional_modules: list = None
        distilled_cfg_scale: float = 3.5

    cached_hr_c = [None, None, None] if FORGE else [None, None]
    cached_hr_uc = [None, None, None] if FORGE else [None, None]

    def __post_init__(self):
        super().__post_init__()
        self.cached_hr_c = StableDiffusionProcessingTxt2Img.cached_hr_c
        self.cached_hr_uc = StableDiffusionProcessingTxt2Img.cached_hr_uc
        self.hr_extra_network_data = None

    def setup_prompts(self):
        super().setup_prompts()
        self.all_hr_prompts = [self.hr_prompt or self.prompt] * len(self.all_prompts)

    def parse_extra_network_prompts(self):
        super().parse_extra_network_prompts()
        if self.enable_hr:
            n = self.iteration * self.batch_size
            self.hr_prompts = self.all_hr_prompts[n:n + self.batch_size]
            self.hr_prompts, self.hr_extra_network_data = extra_networks.parse_prompts(self.hr_prompts)

    def calculate_hr_conds(self):
        self.hr_c = self.get_conds_with_caching(self.hr_prompts, [self.cached_hr_c, self.cached_c],
                                                self.hr_extra_network_data, "hires")

    def setup_conds(self):
        super().setup_conds()
        if not self.enable_hr:
            return
        again = (not opts.hires_fix_use_firstpass_conds) if FORGE else getattr(self.sd_model, "lowvram", False)
        if again:
            extra_networks.activate(self, self.hr_extra_network_data)
            self.calculate_hr_conds()
            extra_networks.activate(self, self.extra_network_data)

    def sample(self):
        sd = self.sd_model
        if FORGE:
            from backend import memory_management
            sd.forge_objects = sd.forge_objects_after_applying_lora.shallow_copy()
            if self.scripts is not None:
                self.scripts.process_before_every_sampling(self, x=None, noise=None, c=self.c, uc=None)
            memory_management.load_models_gpu([sd.forge_objects.unet])
        run_sampler(self, self.steps, "first")
        if self.enable_hr and not state.interrupted:
            self.sample_hr_pass()

    def sample_hr_pass(self):
        self.is_hr_pass = True
        if FORGE and "Use same choices" not in self.hr_additional_modules:  # TypeError for None, as in Forge
            pass
        state.nextjob()
        if not self.disable_extra_networks:
            extra_networks.activate(self, self.hr_extra_network_data)
        self.calculate_hr_conds()
        if self.scripts is not None:
            self.scripts.before_hr(self)
        sd = self.sd_model
        if FORGE:
            from backend import memory_management
            if self.scripts is not None:
                self.scripts.process_before_every_sampling(p=self, x=None, noise=None, c=self.hr_c, uc=None)
            sd.forge_objects = sd.forge_objects_after_applying_lora.shallow_copy()
            if self.scripts is not None:
                self.scripts.process_before_every_sampling(self, x=None, noise=None, c=self.hr_c, uc=None)
            memory_management.load_models_gpu([sd.forge_objects.unet])
        run_sampler(self, self.hr_second_pass_steps or self.steps, "hires")
        self.is_hr_pass = False


class Processed:
    def __init__(self, p, images_list, info=""):
        self.images = images_list
        self.info = info
        self.infotexts = [info] * len(images_list)
        self.comments = "".join(f"{c}\n" for c in p.comments)
        self.extra_generation_params = p.extra_generation_params
        self.prompt = p.prompt
        self.seed = p.seed
        self.all_prompts = list(getattr(p, "all_prompts", None) or [])
        self.all_seeds = list(getattr(p, "all_seeds", None) or [])
        self.all_subseeds = list(getattr(p, "all_subseeds", None) or [])
        self.index_of_first_image = 0


def create_infotext(p, all_prompts=None, all_seeds=None, all_subseeds=None, comments=None, iteration=0,
                    position_in_batch=0, use_main_prompt=False, index=None, all_negative_prompts=None):
    """The webui's signature; called with `p` alone it gives the short form the tests compare."""
    model = _model_fields(p)
    if all_prompts is None:
        extra = ", ".join(f"{k}: {v}" for k, v in {**model, **p.extra_generation_params}.items())
        return f"{p.prompt}\nSteps: {p.steps}, Sampler: {p.sampler_name}" + (f", {extra}" if extra else "")
    extra = ", ".join(f"{k}: {quote(v)}" for k, v in {**model, **p.extra_generation_params}.items())
    if index is None:
        index = 0 if use_main_prompt else position_in_batch + iteration * p.batch_size
    return (f"{all_prompts[index]}\nSteps: {p.steps}, Sampler: {p.sampler_name}, Seed: {all_seeds[index]}"
            + (f", {extra}" if extra else ""))


def _model_fields(p):
    """"Model hash" and "Model" (A1111 1.10 create_infotext, with add_model_hash_to_info and
    add_model_name_to_info on, their defaults); none when process_images did not set them."""
    out = {}
    if getattr(p, "sd_model_hash", None):
        out["Model hash"] = p.sd_model_hash
    if getattr(p, "sd_model_name", None):
        out["Model"] = p.sd_model_name
    return out


def quote(text):
    """infotext_utils.quote: values with a comma, colon or newline are JSON-quoted."""
    import json
    if "," not in str(text) and "\n" not in str(text) and ":" not in str(text):
        return text
    return json.dumps(text, ensure_ascii=False)


# ---- pictures: what the model computed with, made visible --------------------------------------------
BLOCK_ORDER = ["BASE", *(f"IN{i:02d}" for i in range(12)), "M00", *(f"OUT{i:02d}" for i in range(12))]
PICTURE_GAIN = 1.0  # share of a band's columns that light up per unit of relative weight change
PICTURE_LIFT = 100  # how much a lit column is brighter (every channel)


def _block_of(name):
    n = name.replace(".", "_")
    m = re.search(r"input_blocks_(\d+)_", n)
    if m:
        return f"IN{int(m.group(1)):02d}"
    if "middle_block_" in n:
        return "M00"
    m = re.search(r"output_blocks_(\d+)_", n)
    if m:
        return f"OUT{int(m.group(1)):02d}"
    return None


def _originals(kind):
    """Each layer's weight without LoRA, from where the webui keeps it: A1111's per-layer
    `network_weights_backup`, Forge's `LoraLoader.backup`; a layer without one has never been changed."""
    sd = shared.sd_model
    if FORGE:
        patcher = sd.forge_objects.unet if kind == "unet" else sd.forge_objects.clip.patcher
        backup = patcher.model.lora_loader.backup
        return lambda name: backup.get(name)
    mapping = getattr(sd, "network_layer_mapping", {})

    def find(name):
        b = getattr(mapping.get(name), "network_weights_backup", None)
        return b[0] if isinstance(b, tuple) else b
    return find


def _relative_change(snapshot, kind, block_of):
    """{block: |W - W0| / |W0|} over the layers of each block."""
    original = _originals(kind)
    num, den = {}, {}
    for name, w in snapshot.items():
        block = block_of(name)
        if block is None:
            continue
        w0 = original(name)
        w = w.double()
        w0 = w if w0 is None else w0.double().reshape(w.shape)
        num[block] = num.get(block, 0.0) + float(((w - w0) ** 2).sum())
        den[block] = den.get(block, 0.0) + float((w0 ** 2).sum())
    return {b: (num[b] / den[b]) ** 0.5 if den[b] else 0.0 for b in num}


def picture(p, i):
    """A p.width x p.height picture: one horizontal band per block the model has (BASE for the text
    encoder, then IN.., M00, OUT..). A band's first columns are lit in proportion to how far that
    block's weights are from the model's own (min(1, relative change)); the rest is a pattern
    of the image's seed. So a LoRA block at 0 leaves its band dark, and two renders differ exactly
    in the columns their block strengths light differently."""
    import numpy as np
    from PIL import Image
    seed = int(p.seeds[i] if p.seeds else p.all_seeds[0])
    rel = {}
    if p.unet_snapshots:
        rel.update(_relative_change(p.unet_snapshots[-1][2], "unet", _block_of))
    if p.te_snapshots:
        rel.update(_relative_change(p.te_snapshots[-1][1], "te", lambda name: "BASE"))
    blocks = [b for b in BLOCK_ORDER if b in rel]
    h, w = int(p.height), int(p.width)
    x = np.arange(w)
    img = np.zeros((h, w, 3), dtype=np.int32)
    bands = {}
    for k, (block, rows) in enumerate(zip(blocks, np.array_split(np.arange(h), len(blocks)))):
        v = (seed * 7 + k * 37 + x * 5) % 96 + 16
        lit = int(round(w * min(1.0, PICTURE_GAIN * rel[block])))
        for c, shift in enumerate((0, 32, 64)):
            row = (v + shift) % 96 + 16 + np.where(x < lit, PICTURE_LIFT, 0)
            img[rows[0]:rows[-1] + 1, :, c] = row
        bands[block] = (len(rows), lit)
    rendered.append({"prompt": p.all_prompts[p.iteration * p.batch_size + i], "seed": seed, "bands": bands})
    return Image.fromarray(img.astype(np.uint8), "RGB")


def manage_model_and_prompt_cache(p):
    global need_global_unload
    from backend import memory_management
    _, just_reloaded = forge_model_reload()
    if need_global_unload and not just_reloaded:
        memory_management.unload_all_models()
    if need_global_unload:
        p.clear_prompt_cache()
    need_global_unload = False


def process_images(p):
    if p.scripts is not None:
        p.scripts.before_process(p)
    if FORGE:
        manage_model_and_prompt_cache(p)
    else:
        sd_models.reload_model_weights()
    return process_images_inner(p)


def process_images_inner(p):
    p.setup_prompts()
    # A1111 1.10 modules/processing.py: taken from the loaded model just before the scripts' process
    p.sd_model_name = shared.sd_model.sd_checkpoint_info.name_for_extra
    p.sd_model_hash = getattr(shared.sd_model, "sd_model_hash", None)
    if p.scripts is not None:
        p.scripts.process(p)
    if state.job_count == -1:
        state.job_count = p.n_iter
    images = []
    for n in range(p.n_iter):
        p.iteration = n
        if state.skipped:
            state.skipped = False
        if state.interrupted or state.stopping_generation:
            break
        sd = p.sd_model
        if FORGE:
            sd_models.forge_model_reload()
            sd = p.sd_model
            sd.forge_objects = sd.forge_objects_original.shallow_copy()
        else:
            sd_models.reload_model_weights()
        sl = slice(n * p.batch_size, (n + 1) * p.batch_size)
        p.prompts, p.seeds, p.subseeds = p.all_prompts[sl], p.all_seeds[sl], p.all_subseeds[sl]
        if p.scripts is not None:
            p.scripts.before_process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
        p.parse_extra_network_prompts()
        if not p.disable_extra_networks:
            extra_networks.activate(p, p.extra_network_data)
        if FORGE:
            sd.forge_objects = sd.forge_objects_after_applying_lora.shallow_copy()
        if p.scripts is not None:
            p.scripts.process_batch(p, batch_number=n, prompts=p.prompts, seeds=p.seeds, subseeds=p.subseeds)
        p.setup_conds()
        p.sample()
        batch_images = [picture(p, i) if picture_images else f"image {n}.{i}" for i in range(p.batch_size)]
        if p.scripts is not None:
            p.scripts.postprocess_batch(p, batch_images, batch_number=n)
        images += batch_images
        state.nextjob()
    res = Processed(p, images, create_infotext(p) if images else "")
    if p.scripts is not None:
        p.scripts.postprocess(p, res)
    return res


def txt2img_fields():
    return {f.name for f in fields(StableDiffusionProcessingTxt2Img)}
