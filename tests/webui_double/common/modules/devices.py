"""modules/devices.py (A1111: `fp8` is set by load_model_weights when the UNet is stored in fp8)."""
import torch

cpu = torch.device("cpu")
device = cpu
fp8 = False
