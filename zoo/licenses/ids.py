"""Licence ids: SPDX, the Hub's custom ids, publishers' statements; and each id's kind.

Ids are the lower-case forms the Hugging Face Hub uses: SPDX ids (``apache-2.0``, ``mit``,
``cc-by-nc-4.0``, validated against the SPDX list that the ``license-expression`` package
ships), the custom licences publishers use outside SPDX (timm's ``apple-ascl``, the Hub's
``other``; see :data:`KNOWN_CUSTOM`), a custom licence declared on purpose
(``custom:NAME``, stored as ``NAME``), or ``unknown``. Nothing is ever guessed
permissive: what zoo cannot name is ``unknown`` or restrictive.

The compatibility of a derivative's licence with its ancestors: :mod:`zoo.licenses.compat`.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from zoo.contract.errors import UsageError

__all__ = [
    "CUSTOM_PREFIX",
    "KNOWN_CUSTOM",
    "PERMISSIVE",
    "UNKNOWN",
    "LicenseStatement",
    "is_permissive",
    "license_from_url",
    "license_kind",
    "normalize_license",
    "parse_license",
    "publisher_statement",
    "spdx_url",
]

UNKNOWN = "unknown"
CUSTOM_PREFIX = "custom:"  # --license custom:NAME declares a licence outside SPDX on purpose

# Licences that allow redistribution of derivatives under any terms (attribution aside);
# other SPDX ids are permissive when the SPDX data classes them so (see license_kind).
PERMISSIVE = frozenset(
    {
        "apache-2.0",
        "mit",
        "bsd",  # the Hub's id for "some BSD licence"
        "bsd-2-clause",
        "bsd-3-clause",
        "bsd-3-clause-clear",
        "isc",
        "zlib",
        "bsl-1.0",
        "unlicense",
        "cc0-1.0",
        "cc-by-2.0",
        "cc-by-2.5",
        "cc-by-3.0",
        "cc-by-4.0",
        "ecl-2.0",
        "afl-3.0",
        "postgresql",
        "ncsa",
        "wtfpl",
        "pddl",
        "odc-by",
    }
)

# Ids publishers use outside SPDX: the Hugging Face Hub's own list and what timm's
# pretrained configs state. Known, so accepted as they are; custom, so restrictive.
KNOWN_CUSTOM = frozenset(
    {
        "other",  # the Hub's "see the model card"
        "openrail",
        "openrail++",
        "creativeml-openrail-m",
        "bigscience-openrail-m",
        "bigscience-bloom-rail-1.0",
        "bigcode-openrail-m",
        "deepfloyd-if-license",
        "llama2",
        "llama3",
        "llama3.1",
        "llama3.2",
        "llama3.3",
        "llama4",
        "gemma",
        "apple-ascl",
        "apple-amlr",
        "intel-research",
        "lgpl-lr",
        "h-research",
        "fair-noncommercial-research-license",
        "dinov3-license",
        "cvnets-license",
        "fastvit-license",
        "mobileone-license",
        "seer-license",
        "sapiens2-license",
        "nvidia-open-model-license",
        "qwen-community-1.0",
    }
)

_ALIASES = {
    "apache 2.0": "apache-2.0",
    "apache-2": "apache-2.0",
    "apache2": "apache-2.0",
    "apache 2": "apache-2.0",
    "bsd-3": "bsd-3-clause",
    "bsd3": "bsd-3-clause",
    "cc-by-nc": "cc-by-nc-4.0",
    "": UNKNOWN,
    "none": UNKNOWN,
}

# Licence URLs sources give instead of ids (torchvision's weights meta does this).
_URLS = {
    "github.com/facebookresearch/swag/blob/main/license": "cc-by-nc-4.0",
    "github.com/pytorch/vision/blob/main/license": "bsd-3-clause",
    "www.apache.org/licenses/license-2.0": "apache-2.0",
    "apache.org/licenses/license-2.0": "apache-2.0",
    "opensource.org/licenses/mit": "mit",
    "opensource.org/licenses/bsd-3-clause": "bsd-3-clause",
    "creativecommons.org/licenses/by-nc/4.0": "cc-by-nc-4.0",
    "creativecommons.org/licenses/by/4.0": "cc-by-4.0",
    "creativecommons.org/licenses/by-nd/4.0": "cc-by-nd-4.0",
    "creativecommons.org/licenses/by-nc-nd/4.0": "cc-by-nc-nd-4.0",
}


@functools.lru_cache(maxsize=1)
def _spdx() -> Mapping[str, tuple[str, str]]:
    """lower-case SPDX id (current or older form) -> (SPDX id as published, category).

    From the SPDX list that ``license-expression`` ships (ScanCode's licence index);
    ``LicenseRef-`` keys are ScanCode's own, not SPDX, and are left out.
    """
    from license_expression import get_license_index

    out: dict[str, tuple[str, str]] = {}
    for entry in get_license_index():
        key = entry.get("spdx_license_key") or ""
        if not key or key.startswith("LicenseRef-") or entry.get("is_exception"):
            continue
        category = str(entry.get("category") or "")
        for k in (key, *(entry.get("other_spdx_license_keys") or ())):
            if not k.startswith("LicenseRef-"):
                out.setdefault(k.lower(), (key, category))
    return out


def _known(text: str) -> str | None:
    """The id for ``text`` (already lower-case) when zoo knows it, else None."""
    if text in _ALIASES:
        return _ALIASES[text]
    if text == UNKNOWN or text in PERMISSIVE or text in KNOWN_CUSTOM:
        return text
    if text in _spdx():
        return text  # the Hub keeps SPDX ids lower-cased, in the form given (gpl-3.0)
    # a licence's name rather than its id: "MIT License", "Apache License, Version 2.0"
    words = [w for w in re.split(r"[\s,]+", text) if w not in {"license", "licence", "the"}]
    if words != text.split() and words:
        if words[0] == "apache" and words[-1] in {"2", "2.0"}:
            return "apache-2.0"
        slug = "-".join(w for w in words if w != "version")
        if slug in _ALIASES or slug in PERMISSIVE or slug in _spdx():
            return _ALIASES.get(slug, slug)
    return None


def normalize_license(value: str | None) -> str:
    """A source's licence field as a zoo licence id (lower-case; ``unknown`` if empty).

    Lenient, for what publishers state and for ids already stored: a text zoo does not
    know is kept (spaces as dashes) and is then a custom, restrictive licence. User input
    goes through :func:`parse_license`, which refuses unknown ids.
    """
    if value is None:
        return UNKNOWN
    text = str(value).strip().lower()
    while text.startswith(CUSTOM_PREFIX):  # as read again: custom:custom:x is x
        text = text[len(CUSTOM_PREFIX) :].strip()
    if text.startswith(("http://", "https://")):
        return license_from_url(text)
    known = _known(text)
    if known is None:  # "bsd 3" reads as the bsd-3 it is stored as reads: bsd-3-clause
        slug = text.replace(" ", "-")
        known = _known(slug) or slug
    return known


def _all_ids() -> list[str]:
    return sorted({*_spdx(), *PERMISSIVE, *KNOWN_CUSTOM, UNKNOWN})


def parse_license(value: str) -> str:
    """A licence id a user declares (``--license``): known ids only, or ``custom:NAME``.

    An unknown id is a :class:`zoo.UsageError` naming the nearest known ids; a custom
    licence must be declared as such, so a typo never becomes a licence.
    """
    text = str(value).strip().lower()
    if text.startswith(CUSTOM_PREFIX):
        name = text[len(CUSTOM_PREFIX) :].strip()
        if not re.fullmatch(r"[a-z0-9][a-z0-9.+_-]*", name):
            raise UsageError(
                f"'{value}' is not a custom licence name: write custom:NAME with letters, "
                "digits, '.', '+', '_' or '-' (e.g. custom:acme-eula)"
            )
        if _known(name) not in (None, name) or name in _spdx() or name in PERMISSIVE:
            raise UsageError(f"'{name}' is a known licence id: write --license {name}")
        if name == UNKNOWN:
            raise UsageError("'unknown' is not a custom licence: omit --license to inherit")
        return name
    known = _known(text)
    if known is not None:
        return known
    close = difflib.get_close_matches(text, _all_ids(), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise UsageError(
        f"unknown licence id '{value}': {hint}Use an SPDX id as the Hugging Face Hub writes "
        "it (mit, apache-2.0, cc-by-nc-4.0), or declare your own with "
        "--license custom:NAME"
    )


def license_from_url(url: str | None) -> str:
    """Map a licence URL to an id when it is a known licence, else ``unknown``."""
    if not url:
        return UNKNOWN
    key = url.lower().split("://", 1)[-1].rstrip("/")
    for suffix in (".txt", ".md", ".html"):
        key = key.removesuffix(suffix)
    return _URLS.get(key, UNKNOWN)


@dataclass(frozen=True)
class LicenseStatement:
    """What a publisher states about the licence of the weights it publishes."""

    license: str
    url: str | None  # the licence's text
    source: str  # who states it, and where


_TORCHVISION_WEIGHTS = "https://download.pytorch.org/models/"
_SWAG = LicenseStatement(
    "cc-by-nc-4.0",
    "https://github.com/facebookresearch/SWAG/blob/main/LICENSE",
    "torchvision's README and weights metadata: SWAG models are released under CC-BY-NC 4.0",
)
_TORCHVISION = LicenseStatement(
    "bsd-3-clause",
    "https://github.com/pytorch/vision/blob/main/LICENSE",
    "torchvision publishes these weights with its repository, licensed BSD-3-Clause (timm "
    "states the same for its tv_in1k copies); torchvision's docs add that pre-trained "
    "weights may carry terms of the dataset they were trained on",
)


def publisher_statement(weights_url: str | None) -> LicenseStatement | None:
    """The publisher's own statement for the weights file at ``weights_url``, for the
    publishers zoo knows (torchvision's download.pytorch.org/models/); else None.

    The one source of truth for every provider that serves the same file (torchvision
    and timm's ``tv_in1k`` copies), so the same weights never carry two licences.
    """
    if not weights_url or not weights_url.startswith(_TORCHVISION_WEIGHTS):
        return None
    filename = weights_url.rsplit("/", 1)[-1].lower()
    return _SWAG if "swag" in filename else _TORCHVISION


def spdx_url(license_id: str | None) -> str | None:
    """The SPDX page of an SPDX licence id (None for custom and unknown licences)."""
    if not license_id or license_id in KNOWN_CUSTOM or license_id == UNKNOWN:
        return None
    found = _spdx().get(license_id.lower())
    return f"https://spdx.org/licenses/{found[0]}.html" if found else None


def is_permissive(license_id: str) -> bool:
    return license_kind(license_id) == "permissive"


# Licences that require derivatives to keep the same terms (copyleft / share-alike).
_SHARE_ALIKE_PREFIXES = ("cc-by-sa-", "gpl-", "agpl-", "lgpl-", "cc-by-nc-sa-", "odbl")
_NO_DERIVATIVES_PREFIXES = ("cc-by-nd-", "cc-by-nc-nd-")


def license_kind(license_id: str | None) -> str:
    """``permissive``, ``non-commercial``, ``share-alike``, ``no-derivatives``, ``custom``
    or ``unknown``."""
    lid = normalize_license(license_id)
    if lid == UNKNOWN:
        return "unknown"
    if lid.startswith(_NO_DERIVATIVES_PREFIXES):
        return "no-derivatives"
    if lid in PERMISSIVE:
        return "permissive"
    if lid.startswith("cc-by-nc") or "non-commercial" in lid or "noncommercial" in lid:
        return "non-commercial"
    if lid.startswith(_SHARE_ALIKE_PREFIXES):
        return "share-alike"
    if lid in KNOWN_CUSTOM:
        return "custom"
    category = (_spdx().get(lid) or ("", ""))[1]
    if category in {"Permissive", "Public Domain"}:
        return "permissive"
    if category.startswith("Copyleft"):
        return "share-alike"
    return "custom"
