"""Fake modules_forge: its presence (with backend.diffusion_engine) is how Forge is told apart."""
