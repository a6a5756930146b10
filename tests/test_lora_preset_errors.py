"""An unknown lbw= preset names only the presets that fit the LoRA's architecture.

Which presets exist where (REFERENCE §7; LBW hako-mikan/sd-webui-lora-block-weight @ b403cb7): the
SD presets (INS, IND, INALL, MIDD, OUTD, OUTS, OUTALL) have SD1/SD2 and SDXL forms and no Flux form;
FLUXALL is Flux only; NONE, ALL, ALL0.5 and XYZ are uniform and exist on every architecture. A
user preset fits an architecture when it has a list of a length that architecture takes (17/26 on
SD1/SD2, 12/20/26 on SDXL, 61 on Flux). The lists below are written out here, not read from the code.
"""
from __future__ import annotations

import pytest

from lib_merge.arch.blocks import SD1, SD2, SDXL
from lib_merge.arch.flux import FLUX1
from lib_merge.errors import MergeError, ParseError
from lib_merge.lora.presets import DEFAULT_BOOK, PresetBook
from lib_merge.lora.tag import parse_spec, parse_tag
from lib_merge.webui.lbw_files import check_tag
from lib_merge.webui.lbw_tags import validate

SD_ONLY = ["INS", "IND", "INALL", "MIDD", "OUTD", "OUTS", "OUTALL"]
UNIFORM = ["NONE", "ALL", "ALL0.5", "XYZ"]
TAG = "<lora:x:1:1:lbw=NOPE>"


def listed(err: ParseError) -> set[str]:
    """The preset names in the message's Fix part (names are upper-case words, digits, dots)."""
    import re
    return set(re.findall(r"\b[A-Z][A-Z0-9_.]*[A-Z0-9]\b", err.fix or ""))


def fail(arch, tag=TAG, book=DEFAULT_BOOK) -> ParseError:
    with pytest.raises(ParseError) as e:
        parse_tag(tag, book, arch)
    msg = str(e.value)
    assert "\n" not in msg and ". Fix: " in msg and "unknown preset " in msg
    return e.value


@pytest.mark.parametrize("arch", [SD1, SD2, SDXL])
def test_sd_lora_lists_no_flux_preset(arch):
    err = fail(arch)
    names = listed(err)
    assert "FLUXALL" not in str(err)
    assert set(SD_ONLY + UNIFORM) <= names
    assert arch.label in str(err)


def test_flux_lora_lists_the_flux_presets_only():
    err = fail(FLUX1)
    names = listed(err)
    assert {"FLUXALL", *UNIFORM} <= names
    assert not names & set(SD_ONLY)
    assert "61" in err.fix


def test_user_presets_are_listed_where_their_length_fits():
    book = PresetBook.load("MY17:" + ",".join(["1"] * 17) + "\nMY12:" + ",".join(["1"] * 12) + "\n"
                           "MY61:" + ",".join(["0.5"] * 61) + "\n")
    assert {"MY17"} == listed(fail(SD1, book=book)) & {"MY17", "MY12", "MY61"}
    assert {"MY12"} == listed(fail(SDXL, book=book)) & {"MY17", "MY12", "MY61"}
    assert {"MY61"} == listed(fail(FLUX1, book=book)) & {"MY17", "MY12", "MY61"}


def test_suggestion_comes_from_the_architectures_presets():
    assert "did you mean 'FLUXALL'" not in str(fail(SD1, "<lora:x:1:1:lbw=FLUXAL>"))
    assert "did you mean 'FLUXALL'" in str(fail(FLUX1, "<lora:x:1:1:lbw=FLUXAL>"))
    assert "did you mean 'OUTD'" in str(fail(SDXL, "<lora:x:1:1:lbw=OUTDD>"))


def test_architecture_not_known_yet_groups_the_presets():
    """The CLI reads the spec before the model: the list says which presets are for which LoRAs."""
    with pytest.raises(ParseError) as e:
        parse_spec("style.safetensors:1:1:lbw=NOPE")
    fix = e.value.fix
    sd_part, flux_part = fix.split("Flux LoRAs:")
    assert "FLUXALL" not in sd_part and "OUTD" in sd_part and "SDXL" in sd_part
    assert "FLUXALL" in flux_part and "OUTD" not in flux_part


def test_webui_and_rest_paths_pass_the_models_architecture():
    with pytest.raises(MergeError) as e:
        validate([TAG], SD1, DEFAULT_BOOK)
    assert "FLUXALL" not in str(e.value) and "OUTD" in str(e.value)
    with pytest.raises(MergeError) as e:
        validate([TAG], FLUX1, DEFAULT_BOOK)
    assert "FLUXALL" in str(e.value) and "OUTD" not in str(e.value)
    with pytest.raises(MergeError) as e:
        check_tag(TAG, "sdxl", DEFAULT_BOOK)
    assert "FLUXALL" not in str(e.value) and "OUTD" in str(e.value)


def test_known_preset_of_another_architecture_still_says_so():
    """FLUXALL on an SD LoRA is a known name: the resolve step names the architecture it is for."""
    from lib_merge.lora.ratios import resolve
    tag = parse_tag("<lora:x:1:1:lbw=FLUXALL>", DEFAULT_BOOK, SD1)
    with pytest.raises(ParseError, match="'FLUXALL' is for Flux LoRAs"):
        resolve(tag, SD1, DEFAULT_BOOK)
