"""Licence ids and the one compatibility table between a parent and its derivative.

Ids are lowercase Hugging Face licence ids (``apache-2.0``, ``mit``, ``cc-by-nc-4.0``),
a custom licence's own name (``dinov3-license``, ``apple-ascl``), or ``unknown``.
Nothing is ever guessed permissive: what zoo cannot name is ``unknown``.

Compatibility (parent -> declared derivative licence), documented in docs/licenses.md
and tested row by row (tests/test_licenses.py):

    parent kind       example              allows
    permissive        apache-2.0, mit      any licence
    non-commercial    cc-by-nc-4.0         itself only
    share-alike       cc-by-sa-4.0, gpl    itself only
    custom            dinov3-license       itself only
    unknown           unknown              unknown only

Without a declared licence a derivative inherits its parent's, which is always allowed.
A refused pair passes only with an override reason, which the registry records.
"""

from __future__ import annotations

from zoo.errors import LicenseError

__all__ = [
    "COMPATIBILITY",
    "PERMISSIVE",
    "UNKNOWN",
    "check_compatible",
    "decide_license",
    "is_compatible",
    "license_from_url",
    "license_kind",
    "normalize_license",
]

UNKNOWN = "unknown"

# Licences that allow redistribution of derivatives under any terms (attribution aside).
PERMISSIVE = frozenset(
    {
        "apache-2.0",
        "mit",
        "bsd",
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

_ALIASES = {
    "apache 2.0": "apache-2.0",
    "apache-2": "apache-2.0",
    "apache2": "apache-2.0",
    "apache license 2.0": "apache-2.0",
    "bsd-3": "bsd-3-clause",
    "bsd3": "bsd-3-clause",
    "cc-by-nc": "cc-by-nc-4.0",
    "other": UNKNOWN,
    "": UNKNOWN,
    "none": UNKNOWN,
}

# Licence URLs sources give instead of ids (torchvision's weights meta does this).
_URLS = {
    "github.com/facebookresearch/swag/blob/main/license": "cc-by-nc-4.0",
    "www.apache.org/licenses/license-2.0": "apache-2.0",
    "apache.org/licenses/license-2.0": "apache-2.0",
    "opensource.org/licenses/mit": "mit",
    "opensource.org/licenses/bsd-3-clause": "bsd-3-clause",
    "creativecommons.org/licenses/by-nc/4.0": "cc-by-nc-4.0",
    "creativecommons.org/licenses/by/4.0": "cc-by-4.0",
}


def normalize_license(value: str | None) -> str:
    """A source's licence field as a zoo licence id (lowercase; ``unknown`` if empty)."""
    if value is None:
        return UNKNOWN
    text = str(value).strip().lower()
    if text.startswith(("http://", "https://")):
        return license_from_url(text)
    return _ALIASES.get(text, text.replace(" ", "-"))


def license_from_url(url: str | None) -> str:
    """Map a licence URL to an id when it is a known licence, else ``unknown``."""
    if not url:
        return UNKNOWN
    key = url.lower().split("://", 1)[-1].rstrip("/")
    for suffix in (".txt", ".md", ".html"):
        key = key.removesuffix(suffix)
    return _URLS.get(key, UNKNOWN)


def is_permissive(license_id: str) -> bool:
    return normalize_license(license_id) in PERMISSIVE


# Licences that require derivatives to keep the same terms (copyleft / share-alike).
_SHARE_ALIKE_PREFIXES = ("cc-by-sa-", "gpl-", "agpl-", "lgpl-", "cc-by-nc-sa-", "odbl")


def license_kind(license_id: str) -> str:
    """``permissive``, ``non-commercial``, ``share-alike``, ``custom`` or ``unknown``."""
    lid = normalize_license(license_id)
    if lid == UNKNOWN:
        return "unknown"
    if lid in PERMISSIVE:
        return "permissive"
    if lid.startswith("cc-by-nc") or "non-commercial" in lid or "noncommercial" in lid:
        return "non-commercial"
    if lid.startswith(_SHARE_ALIKE_PREFIXES):
        return "share-alike"
    return "custom"


# The one table: parent kind -> which declared derivative licences it allows.
# "any": every licence; "same": only the parent's own id.
COMPATIBILITY: dict[str, str] = {
    "permissive": "any",
    "non-commercial": "same",
    "share-alike": "same",
    "custom": "same",
    "unknown": "same",
}


def is_compatible(parent: str, derivative: str) -> bool:
    """May a derivative of a ``parent``-licensed model be released as ``derivative``?"""
    parent, derivative = normalize_license(parent), normalize_license(derivative)
    if COMPATIBILITY[license_kind(parent)] == "any":
        return True
    return parent == derivative


def check_compatible(parent: str, derivative: str, *, override: str | None = None) -> None:
    """Raise LicenseError unless compatible or overridden with a reason."""
    if is_compatible(parent, derivative):
        return
    if override is not None and override.strip():
        return
    parent_id, derivative_id = normalize_license(parent), normalize_license(derivative)
    raise LicenseError(
        f"licence {derivative_id} is not compatible with the parent's licence {parent_id} "
        f"({license_kind(parent_id)} licences allow only themselves): keep {parent_id} (omit "
        '--license) or pass --license-override "REASON"'
    )


def decide_license(
    parent_license: str | None, declared: str | None, override: str | None
) -> tuple[str, bool]:
    """A derivative's licence and whether it was inherited; LicenseError if refused.

    The one decision the engine takes before its first epoch and the registry takes again
    when it registers (so a refused licence never costs a training run).
    """
    from zoo.errors import UsageError

    if override is not None and not override.strip():
        raise UsageError('--license-override needs a reason: --license-override "REASON"')
    if declared is None:
        return parent_license or UNKNOWN, True
    license_id = normalize_license(declared)
    check_compatible(parent_license or UNKNOWN, license_id, override=override)
    return license_id, False
