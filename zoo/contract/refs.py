"""The model reference grammar, in one place.

    timm:ARCH[.TAG][@REV]          timm:resnet50.a1_in1k
    torchvision:ARCH[.WEIGHTS]     torchvision:resnet50.IMAGENET1K_V2 (no suffix: default weights)
    hf:ORG/REPO[@REV]              hf:timm/resnet50.a1_in1k@<sha>   (repo id taken whole)
    local:NAME                     a checkpoint imported with `zoo import`
    models:/NAME/VERSION           a registered derivative (MLflow's own URI forms)
    models:/NAME/latest
    models:/NAME@ALIAS
    NAME                           bare: the registered model NAME or local:NAME, whichever exists
    REF1,REF2[,...]                joined: several backbones at once (finetune, rank, info)

A third-party provider named ``foo`` answers references ``foo:NAME[@REV]``; it reads
``Ref.name`` itself. Parsing never imports a provider; it only checks the shape.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from zoo.contract.errors import BadReferenceError

__all__ = ["FORMS", "JOINER", "Ref", "is_joined", "join_refs", "parse_ref", "parse_refs"]

FORMS = (
    "timm:ARCH[.TAG], torchvision:ARCH[.WEIGHTS], hf:ORG/REPO[@REVISION], local:NAME, "
    "models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS"
)

_SCHEME = re.compile(r"^(?P<scheme>[a-z][a-z0-9_-]*):(?P<rest>.*)$")
_SIMPLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # no '/', no '@'
_HF_REPO = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]*/)?[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./-]*$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+ -]*$")
_VERSION = re.compile(r"^(?:[1-9][0-9]*|latest)$")

# A name becomes a file name (local/NAME, cache records): stay under the file systems'
# 255-byte limit with room for suffixes. Versions are stored as integers by MLflow's
# databases: PostgreSQL's INTEGER is 32-bit, so that is the bound on every backend.
MAX_NAME_LENGTH = 200
MAX_VERSION = 2**31 - 1

# Joins several references into one (a multi-backbone probe). No form above can hold it:
# every name pattern leaves ',' out, so a comma in a reference is always a joiner.
JOINER = ","

# Schemes whose NAME is ARCH[.TAG]: the first dot splits architecture from tag.
_TAGGED = {"timm", "torchvision"}


@dataclass(frozen=True)
class Ref:
    """A parsed reference. ``scheme`` is the provider name, ``models`` or ``bare``."""

    scheme: str
    name: str  # timm: "resnet50.a1_in1k"; hf: "timm/resnet50.a1_in1k"; models: the model name
    revision: str | None = None  # @REV for providers with revisions (hf, timm)
    version: str | None = None  # models:/NAME/VERSION ("latest" allowed)
    alias: str | None = None  # models:/NAME@ALIAS

    @property
    def is_registered(self) -> bool:
        return self.scheme == "models"

    @property
    def arch(self) -> str:
        """Architecture part for tagged schemes (timm, torchvision); the name elsewhere."""
        return self.name.split(".", 1)[0] if self.scheme in _TAGGED else self.name

    @property
    def tag(self) -> str | None:
        if self.scheme in _TAGGED and "." in self.name:
            return self.name.split(".", 1)[1]
        return None

    def with_revision(self, revision: str | None) -> Ref:
        """Apply ``--revision``; a different ``@REV`` already in the reference is an error."""
        if revision is None:
            return self
        if self.revision is not None and self.revision != revision:
            raise BadReferenceError(
                f"'{self}' pins revision {self.revision} but --revision says {revision}: "
                "give only one of them"
            )
        return Ref(self.scheme, self.name, revision=revision)

    def __str__(self) -> str:
        if self.scheme == "bare":
            return self.name
        if self.scheme == "models":
            if self.alias is not None:
                return f"models:/{self.name}@{self.alias}"
            return f"models:/{self.name}/{self.version or 'latest'}"
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.scheme}:{self.name}{rev}"


def _bad(text: str, why: str, form: str = FORMS) -> BadReferenceError:
    return BadReferenceError(f"bad model reference '{text}': {why}; use {form}")


def _too_long(text: str) -> BadReferenceError:
    return BadReferenceError(
        f"bad model reference '{text[:40]}...': it is {len(text)} characters long; names "
        f"hold at most {MAX_NAME_LENGTH} characters"
    )


def is_joined(text: str) -> bool:
    """Does ``text`` join several references (``REF1,REF2``)?"""
    return JOINER in text


def parse_refs(text: str) -> tuple[Ref, ...]:
    """One reference or several joined by ``JOINER``; an error names the bad part.

    A part may not be empty, appear twice, or be a registered model (``models:/``, or a
    bare name, which may be one): only provider and local backbones are joined.
    """
    if not is_joined(text):
        return (parse_ref(text),)
    parts = [part.strip() for part in text.split(JOINER)]
    out: list[Ref] = []
    for i, part in enumerate(parts, start=1):
        where = f"part {i} of '{text}'"
        if not part:
            raise BadReferenceError(
                f"bad joined reference: {where} is empty; join references with single "
                f"commas, e.g. timm:resnet18,timm:resnet34"
            )
        try:
            ref = parse_ref(part)
        except BadReferenceError as exc:
            raise BadReferenceError(f"{where}: {exc}") from None
        if ref.scheme in ("models", "bare"):
            raise BadReferenceError(
                f"{where}: '{part}' may be a registered model, which cannot be joined; "
                "join provider or local references (timm:ARCH, local:NAME, ...)"
            )
        if ref in out:
            raise BadReferenceError(f"{where}: '{part}' is given twice; give each backbone once")
        out.append(ref)
    return tuple(out)


def join_refs(refs: Sequence[Ref | str]) -> str:
    """The joined reference of ``refs`` (their canonical forms, in order)."""
    return JOINER.join(str(r) for r in refs)


def parse_ref(text: str) -> Ref:
    """Parse a reference; the error says which form to use instead."""
    text = text.strip()
    if not text:
        raise _bad(text, "it is empty")
    if JOINER in text:
        raise _bad(
            text,
            f"'{JOINER}' joins several references, and only finetune, rank and info take "
            "joined references",
            "one reference",
        )
    if len(text) > MAX_NAME_LENGTH + 60:
        raise _too_long(text)
    if text.startswith("models:"):
        return _parse_models(text)
    m = _SCHEME.match(text)
    if m is None:
        if "/" in text or "@" in text or ":" in text:
            raise _bad(text, "it has no provider prefix")
        if not _MODEL_NAME.match(text):
            raise _bad(text, "a bare name may hold letters, digits, '_', '-', '.' only")
        if len(text) > MAX_NAME_LENGTH:
            raise _too_long(text)
        return Ref("bare", text)
    scheme, rest = m.group("scheme"), m.group("rest")
    name, _, revision = rest.partition("@")
    if "@" in rest and not revision:
        raise _bad(text, "'@' must be followed by a revision", f"{scheme}:NAME@REVISION")
    if revision and not _REVISION.match(revision):
        raise _bad(text, f"'{revision}' is not a revision", f"{scheme}:NAME@REVISION")
    if not name:
        raise _bad(text, f"nothing follows '{scheme}:'")
    if scheme == "hf":
        if not _HF_REPO.match(name):
            raise _bad(text, "a Hub repo id is ORG/REPO", "hf:ORG/REPO[@REVISION]")
    elif scheme == "torchvision":
        if revision:
            raise _bad(text, "torchvision weights have no revisions", "torchvision:ARCH[.WEIGHTS]")
        if not _SIMPLE_NAME.match(name) or name.count(".") > 1:
            raise _bad(
                text,
                "expected an architecture and an optional weights name",
                "torchvision:ARCH[.WEIGHTS]",
            )
    elif scheme == "timm":
        if not _SIMPLE_NAME.match(name) or name.startswith(".") or name.endswith("."):
            raise _bad(text, "expected an architecture and an optional tag", "timm:ARCH[.TAG]")
    elif scheme == "local":
        if revision:
            raise _bad(text, "local models have no revisions", "local:NAME")
        if not _SIMPLE_NAME.match(name):
            raise _bad(text, "a local name holds letters, digits, '_', '-', '.' only", "local:NAME")
    elif not _SIMPLE_NAME.match(name) and not _HF_REPO.match(name):
        raise _bad(text, "the name holds characters no provider accepts")
    if len(name) > MAX_NAME_LENGTH:
        raise _too_long(text)
    return Ref(scheme, name, revision=revision or None)


def _parse_models(text: str) -> Ref:
    form = "models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS"
    if not text.startswith("models:/"):
        raise _bad(text, "registered models are written with a slash after 'models:'", form)
    body = text[len("models:/") :]
    if "@" in body:
        name, _, alias = body.partition("@")
        if not alias or "/" in alias or not _SIMPLE_NAME.match(alias):
            raise _bad(text, "an alias holds letters, digits, '_', '-' only", form)
        if not name or not _MODEL_NAME.match(name):
            raise _bad(text, "the model name is missing or malformed", form)
        return Ref("models", name, alias=alias)
    name, slash, version = body.rpartition("/")
    if not slash:
        raise _bad(text, "the version is missing", form)
    if not name or "/" in name or not _MODEL_NAME.match(name):
        raise _bad(text, "the model name is missing or malformed", form)
    if not _VERSION.match(version):
        raise _bad(text, f"'{version}' is not a version number or 'latest'", form)
    if version != "latest" and (len(version) > 10 or int(version) > MAX_VERSION):
        raise _bad(text, f"version {version[:20]} is past the largest ({MAX_VERSION})", form)
    if len(name) > MAX_NAME_LENGTH:
        raise _too_long(text)
    return Ref("models", name, version=version)
