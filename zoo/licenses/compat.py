"""The one decision on a derivative's licence along its whole chain.

Compatibility (ancestor -> declared derivative licence), documented in docs/licenses.md
and tested row by row (tests/test_licenses.py):

    ancestor kind     example              allows
    permissive        apache-2.0, mit      any licence
    non-commercial    cc-by-nc-4.0         itself only
    share-alike       cc-by-sa-4.0, gpl    itself only
    no-derivatives    cc-by-nd-4.0         nothing (no fine-tuning)
    custom            dinov3-license       itself only
    unknown           unknown              unknown only

A derivative's licence (declared, or inherited from its parent) must be allowed by every
ancestor, root first. An override covers only the version it is recorded on: its
descendants are checked against the ancestors' licences again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zoo.contract.errors import LicenseError, UsageError
from zoo.licenses.ids import UNKNOWN, license_kind, normalize_license, parse_license

__all__ = [
    "COMPATIBILITY",
    "Ancestor",
    "check_compatible",
    "decide_license",
    "decide_licenses",
    "is_compatible",
]


# The one table: ancestor kind -> which derivative licences it allows.
# "any": every licence; "same": only the ancestor's own id; "none": no derivative at all.
COMPATIBILITY: dict[str, str] = {
    "permissive": "any",
    "non-commercial": "same",
    "share-alike": "same",
    "no-derivatives": "none",
    "custom": "same",
    "unknown": "same",
}

_RULE_WORDS = {
    "same": "allow only themselves",
    "none": "allow no derivatives at all",
}


def is_compatible(parent: str, derivative: str) -> bool:
    """May a derivative of a ``parent``-licensed model be released as ``derivative``?"""
    parent, derivative = normalize_license(parent), normalize_license(derivative)
    rule = COMPATIBILITY[license_kind(parent)]
    if rule == "any":
        return True
    return rule == "same" and parent == derivative


@dataclass(frozen=True)
class Ancestor:
    """One model up a derivative's chain, as the decision needs it."""

    reference: str  # a provider reference (the root) or models:/NAME/N
    license: str
    override: str | None = None  # the reason, when that version was registered by override

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "license": self.license, "override": self.override}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ancestor:
        return cls(
            reference=str(data.get("reference") or "?"),
            license=normalize_license(data.get("license")),
            override=data.get("override") or None,
        )


def _refusal(
    ancestor: Ancestor | None,
    license_id: str,
    *,
    inherited: bool,
    is_parent: bool,
    overrides: Sequence[Ancestor] = (),
) -> LicenseError:
    anc_id = ancestor.license if ancestor else UNKNOWN
    kind = license_kind(anc_id)
    whose = f"the parent's licence {anc_id}"
    if ancestor is not None and ancestor.reference:
        who = "the parent" if is_parent else "the ancestor"
        whose = f"licence {anc_id} of {who} {ancestor.reference}"
    if COMPATIBILITY[kind] == "none":
        text = (
            f"{whose[0].upper()}{whose[1:]} allows no derivatives: fine-tuning it (or a "
            f"derivative of it) into a model licensed {license_id} is refused; "
            'pass --license-override "REASON" if you have the rights holder\'s permission'
        )
    else:
        what = f"the inherited licence {license_id}" if inherited else f"licence {license_id}"
        keep = (
            f"keep {anc_id} (omit --license)"
            if is_parent and not inherited
            else f"declare --license {anc_id}"
        )
        text = (
            f"{what} is not compatible with {whose} ({kind} licences "
            f"{_RULE_WORDS[COMPATIBILITY[kind]]}): {keep} or pass --license-override "
            '"REASON"'
        )
    for o in overrides:
        text += (
            f'; the override on {o.reference} ("{o.override}") covers that version only, '
            "not its descendants"
        )
    return LicenseError(text)


def check_compatible(parent: str, derivative: str, *, override: str | None = None) -> None:
    """Raise LicenseError unless compatible or overridden with a reason."""
    if is_compatible(parent, derivative):
        return
    if override is not None and override.strip():
        return
    raise _refusal(
        Ancestor("", normalize_license(parent)),
        normalize_license(derivative),
        inherited=False,
        is_parent=True,
    )


def decide_license(
    parent_license: str | None,
    declared: str | None,
    override: str | None,
    *,
    chain: Sequence[Ancestor] = (),
) -> tuple[str, bool]:
    """A derivative's licence and whether it was inherited; LicenseError if refused.

    ``chain``: every ancestor, root first and the parent last, with the override each
    was registered with (the registry records it; :func:`zoo.registry.lineage.license_chain`
    reads it); empty means the parent alone, licensed ``parent_license``. The licence
    (``declared``, validated by :func:`parse_license`, or else the parent's) must be
    allowed by every ancestor; ``override`` (a reason) lets this one version pass.

    The one decision: the engine takes it before its first epoch and the registry again
    when it registers (so a refused licence never costs a training run).
    """
    if override is not None and not override.strip():
        raise UsageError('--license-override needs a reason: --license-override "REASON"')
    inherited = declared is None
    ancestors = list(chain) or [Ancestor("", normalize_license(parent_license))]
    if inherited:
        license_id = normalize_license(parent_license) if parent_license else ancestors[-1].license
    else:
        license_id = parse_license(str(declared))
    if override is not None:
        return license_id, inherited
    last = len(ancestors) - 1
    # nearest first: the parent's refusal is the one to name when several refuse
    for i in range(last, -1, -1):
        ancestor = ancestors[i]
        if is_compatible(ancestor.license, license_id):
            continue
        overrides = [a for a in ancestors[i:] if a.override]
        raise _refusal(
            ancestor, license_id, inherited=inherited, is_parent=i == last, overrides=overrides
        )
    return license_id, inherited


def decide_licenses(
    parents: Sequence[tuple[str | None, Sequence[Ancestor]]],
    declared: str | None,
    override: str | None,
) -> tuple[str, bool]:
    """:func:`decide_license` for a derivative of several parents (a DAG): the licence
    must be allowed by every ancestor of every parent. ``parents``: each parent's licence
    and chain (root first, the parent last). Parents of different licences leave nothing
    to inherit: the derivative's licence must then be declared.
    """
    if not parents:  # a derivative has a parent: a caller that passes none is wrong
        raise ValueError("decide_licenses needs at least one parent")
    if len(parents) == 1:
        return decide_license(parents[0][0], declared, override, chain=parents[0][1])
    if declared is None and override is None:
        own = {normalize_license(lic) for lic, _ in parents}
        if len(own) > 1:
            raise LicenseError(
                f"the parents are licensed {', '.join(sorted(own))}, so there is no one "
                "licence to inherit: declare the derivative's with --license ID (one that "
                "every parent allows)"
            )
    decided = [decide_license(lic, declared, override, chain=chain) for lic, chain in parents]
    return decided[-1]
