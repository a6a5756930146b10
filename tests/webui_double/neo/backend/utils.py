"""backend/utils.py: `load_torch_file(ckpt, safe_load=False, device=None, *, return_metadata=False)`
(283cb2c4): `ckpt.lower()` first, so only a path works; safetensors are read with `safe_open`."""
import safetensors

reads = []  # every path read (tests look at it)


def load_torch_file(ckpt, safe_load=False, device=None, *, return_metadata=False):
    reads.append(ckpt)
    if not ckpt.lower().endswith((".safetensors", ".sft")):
        raise ValueError(f"the double reads safetensors only: {ckpt}")
    with safetensors.safe_open(ckpt, framework="pt", device="cpu") as f:
        sd = {k: f.get_tensor(k) for k in f.keys()}
        metadata = f.metadata()
    return (sd, metadata) if return_metadata else sd
