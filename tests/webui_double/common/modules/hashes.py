"""modules/hashes.py + modules/cache.py as A1111 1.6-1.8 have them (the cache.json flavour): the
"hashes" section of data_path/cache.json maps "checkpoint/NAME" to {"mtime", "sha256"}; an entry
whose mtime is older than the file's is stale. Written from the documented behaviour, for tests."""
import hashlib
import json
import os

from modules import paths_internal

cache_filename = os.path.join(paths_internal.data_path, "cache.json")
_data = None
computed = []  # files this double hashed itself, for tests


def cache(subsection):
    global _data
    if _data is None:
        try:
            with open(cache_filename, encoding="utf8") as f:
                _data = json.load(f)
        except FileNotFoundError:
            _data = {}
    return _data.setdefault(subsection, {})


def dump_cache():
    with open(cache_filename + "-", "w", encoding="utf8") as f:
        json.dump(_data, f, indent=4, ensure_ascii=False)
    os.replace(cache_filename + "-", cache_filename)


def sha256_from_cache(filename, title, use_addnet_hash=False):
    hashes = cache("hashes-addnet" if use_addnet_hash else "hashes")
    try:
        ondisk_mtime = os.path.getmtime(filename)
    except FileNotFoundError:
        return None
    entry = hashes.get(title)
    if entry is None or entry.get("sha256") is None or ondisk_mtime > entry.get("mtime", 0):
        return None
    return entry["sha256"]


def sha256(filename, title, use_addnet_hash=False):
    got = sha256_from_cache(filename, title, use_addnet_hash)
    if got is not None:
        return got
    with open(filename, "rb") as f:
        got = hashlib.sha256(f.read()).hexdigest()
    computed.append(filename)
    cache("hashes-addnet" if use_addnet_hash else "hashes")[title] = {"mtime": os.path.getmtime(filename), "sha256": got}
    dump_cache()
    return got
