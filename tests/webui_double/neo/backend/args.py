"""backend/args.py: `dynamic_args` is a dict at 283cb2c4 (`dynamic_args = dict(embedding_dir=None, ...)`,
read with `.get(...)` by networks.py 4e2c21f9); newer Neo files read attributes (networks.py 19cc8799:
`dynamic_args.online_lora`). The double keeps the dict form of the full tree it follows."""
dynamic_args = dict(embedding_dir=None, forge_unet_storage_dtype=None, kontext=False, edit=False, nunchaku=False,
                    online_lora=False, ops="")
