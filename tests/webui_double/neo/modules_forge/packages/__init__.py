"""modules_forge/packages: what Neo vendors (comfy, huggingface_guess, k_diffusion)."""
