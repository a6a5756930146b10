"""modules_forge/main_entry.py: the checkpoint dropdown sets the loading parameters."""


def refresh_model_loading_parameters():
    from modules import processing
    from modules.sd_models import model_data, select_checkpoint
    model_data.forge_loading_parameters = dict(checkpoint_info=select_checkpoint(), additional_modules=[],
                                               unet_storage_dtype=None)
    processing.need_global_unload = True
