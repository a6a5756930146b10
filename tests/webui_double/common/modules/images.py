"""modules/images.py (the subset BlockMerge uses): `save_image` writes a PNG with its infotext in the
`parameters` text chunk and returns (fullfn, txt_fullfn); every call is kept in `saved` for tests."""
import os

saved = []


def save_image(image, path, basename, seed=None, prompt=None, extension="png", info=None, short_filename=False,
               no_prompt=False, grid=False, pnginfo_section_name="parameters", p=None, existing_info=None,
               forced_filename=None, suffix="", save_to_dirs=None):
    from PIL.PngImagePlugin import PngInfo
    os.makedirs(path, exist_ok=True)
    number = len([f for f in os.listdir(path) if f.endswith("." + extension)])
    name = forced_filename or (f"{basename}-{number:04}" if grid else f"{number:05}-{seed}")
    fullfn = os.path.join(path, f"{name}{suffix}.{extension}")
    pnginfo = PngInfo()
    if info is not None:
        pnginfo.add_text(pnginfo_section_name, info)
    image.save(fullfn, pnginfo=pnginfo)
    saved.append({"path": fullfn, "basename": basename, "grid": grid, "seed": seed, "prompt": prompt, "info": info})
    return fullfn, None
