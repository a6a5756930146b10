"""lib_xyz/classes.py: AxisOption as in A1111; SharedSettingsStackHelper does no reload (Neo has no
reload_model_weights) and, as Neo's plot does at the end of `run`
(`refresh_loading_params_for_xyz_grid`, 283cb2c4 scripts/xyz_grid.py), rebuilds the loading parameters
from the selected checkpoint: a new dict with the same content."""
from modules.sd_models import model_data, select_checkpoint


def format_value_add_label(p, opt, x):
    if type(x) is float:
        x = round(x, 8)
    return f"{opt.label}: {x}"


class AxisOption:
    def __init__(self, label, type, apply, format_value=format_value_add_label, confirm=None, cost=0.0, choices=None,
                 prepare=None):
        self.label = label
        self.type = type
        self.apply = apply
        self.format_value = format_value
        self.confirm = confirm
        self.cost = cost
        self.prepare = prepare
        self.choices = choices


class AxisOptionImg2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = True


class AxisOptionTxt2Img(AxisOption):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_img2img = False


class SharedSettingsStackHelper:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        old = model_data.forge_loading_parameters
        model_data.forge_loading_parameters = dict(checkpoint_info=select_checkpoint(),
                                                   additional_modules=old.get("additional_modules", []),
                                                   unet_storage_dtype=old.get("unet_storage_dtype", None))
