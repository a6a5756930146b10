"""backend/memory_management.py: a patcher is (re)loaded, and its LoRAs refreshed, only when it is not
the loaded one (LoadedModel equality is patcher identity); loading unloads its clones first."""
current_loaded_models = []
loads = []  # patchers model_load() ran for (tests read it)


class LoadedModel:
    def __init__(self, model):
        self.model = model

    def model_load(self):
        loads.append(self.model)
        self.model.refresh_loras()

    def model_unload(self, avoid_model_moving=False):
        pass

    def __eq__(self, other):
        return self.model is other.model


def unload_model_clones(model):
    for i in reversed(range(len(current_loaded_models))):
        if model.is_clone(current_loaded_models[i].model):
            current_loaded_models.pop(i).model_unload(avoid_model_moving=True)


def load_models_gpu(models, memory_required=0, hard_memory_preservation=0):
    for m in models:
        if any(lm.model is m for lm in current_loaded_models):
            continue
        unload_model_clones(m)
        lm = LoadedModel(m)
        lm.model_load()
        current_loaded_models.insert(0, lm)


def load_model_gpu(model):
    return load_models_gpu([model])


def unload_all_models():
    while current_loaded_models:
        current_loaded_models.pop().model_unload()
