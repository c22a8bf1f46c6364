"""The model reference grammar: the shared part here; what follows SCHEME: is its provider's.

    timm:ARCH[.TAG][@REV]          timm:resnet50.a1_in1k
    torchvision:ARCH[.WEIGHTS]     torchvision:resnet50.IMAGENET1K_V2 (no suffix: default weights)
    hf:ORG/REPO[@REV]              hf:timm/resnet50.a1_in1k@<sha>   (repo id taken whole)
    local:NAME                     a checkpoint imported with `zoo import`
    models:/NAME/VERSION           a registered derivative (MLflow's own URI forms)
    models:/NAME/latest
    models:/NAME@ALIAS
    NAME                           bare: the registered model NAME or local:NAME, whichever exists
    REF1,REF2[,...]                joined: several backbones at once (finetune, rank, info)

This module holds the shared grammar (``SCHEME:NAME[@REV]``, ``models:/``, bare names,
the joiner, lengths). What may follow ``SCHEME:`` is the provider's: each declares a
:class:`NameGrammar` (its optional ``grammar`` member; ``NameGrammar.simple()``,
``.tagged()`` and ``.repo()`` are the common shapes), and one that declares none gets
:data:`GENERIC` (a simple name or an ``ORG/REPO`` id, revisions allowed). ``parse_ref``
applies the grammar of the registered provider of that scheme, as the plugin manager
answers (:func:`answer_grammars`; zoo.contract.plugins wires it): parsing imports no
provider module itself, and ``models:/`` and bare names ask nothing.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from zoo.contract.errors import BadReferenceError

__all__ = [
    "FORMS",
    "GENERIC",
    "JOINER",
    "NameGrammar",
    "Ref",
    "answer_grammars",
    "forms",
    "grammars_unasked",
    "is_joined",
    "join_refs",
    "parse_ref",
    "parse_refs",
    "registered_grammars",
]

_MODELS_FORMS = "models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS"
# The forms listed when no plugin manager answers (and their order when one does): zoo's
# own providers, as its error lines have always listed them.
_BUILTIN_FORMS = (
    ("timm", "ARCH[.TAG]"),
    ("torchvision", "ARCH[.WEIGHTS]"),
    ("hf", "ORG/REPO[@REVISION]"),
    ("local", "NAME"),
)
FORMS = ", ".join([*(f"{s}:{f}" for s, f in _BUILTIN_FORMS), _MODELS_FORMS])

_SCHEME = re.compile(r"^(?P<scheme>[a-z][a-z0-9_-]*):(?P<rest>.*)$")
_SIMPLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # no '/', no '@'
_TAGGED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*(?<!\.)$")  # ARCH[.TAG], no end '.'
_ONE_TAG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_+-]*(?:\.[A-Za-z0-9_+-]*)?$")  # one '.'
_HF_REPO = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]*/)?[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ALIAS = re.compile(r"[A-Za-z0-9_-]+")  # as MLflow's alias names (ASCII)
_NAME_OR_REPO = re.compile(f"{_SIMPLE_NAME.pattern}|{_HF_REPO.pattern}")
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


@dataclass(frozen=True)
class NameGrammar:
    """How one provider's names parse: what may follow ``SCHEME:`` (a provider's
    ``grammar``; docs/references.md). Use the common shapes (:meth:`simple`,
    :meth:`tagged`, :meth:`repo`) rather than writing a pattern.

    - ``form``: the name's form as users are shown it after ``SCHEME:`` (``ARCH[.TAG]``);
    - ``pattern``: a name is well-formed when it matches whole (the shared grammar has
      already refused ',', '@', an empty name and an over-long one);
    - ``refusal``: why a name that does not match is refused (one clause);
    - ``split_tag``: names are ``ARCH[.TAG]``, the first dot splits (``Ref.arch``, ``Ref.tag``);
    - ``revisions``: ``@REV`` is accepted; if not, ``no_revisions`` says why (``{scheme}``
      is filled in).
    """

    form: str
    pattern: re.Pattern[str]
    refusal: str
    split_tag: bool = False
    revisions: bool = True
    no_revisions: str = "{scheme} names have no revisions"

    @classmethod
    def simple(
        cls,
        form: str = "NAME",
        *,
        revisions: bool = True,
        refusal: str = "a name holds letters, digits, '_', '-', '.' only",
        no_revisions: str = "{scheme} names have no revisions",
    ) -> NameGrammar:
        """One name, taken whole: letters, digits, ``_ . + -``, no ``/``."""
        return cls(form, _SIMPLE_NAME, refusal, False, revisions, no_revisions)

    @classmethod
    def tagged(
        cls,
        form: str = "ARCH[.TAG]",
        *,
        revisions: bool = True,
        dotted_tags: bool = True,
        refusal: str = "expected an architecture and an optional tag",
        no_revisions: str = "{scheme} names have no revisions",
    ) -> NameGrammar:
        """``ARCH[.TAG]`` like timm's: the first dot splits; ``dotted_tags=False`` allows
        no further dot (torchvision's weights names)."""
        pattern = _TAGGED_NAME if dotted_tags else _ONE_TAG_NAME
        return cls(form, pattern, refusal, True, revisions, no_revisions)

    @classmethod
    def repo(
        cls,
        form: str = "ORG/REPO[@REVISION]",
        *,
        revisions: bool = True,
        refusal: str = "a Hub repo id is ORG/REPO",
        no_revisions: str = "{scheme} names have no revisions",
    ) -> NameGrammar:
        """A Hub-style repo id ``[ORG/]REPO``, taken whole (dots included)."""
        return cls(form, _HF_REPO, refusal, False, revisions, no_revisions)

    def split(self, name: str) -> tuple[str, str | None]:
        """(architecture, tag) of a tagged name; (name, None) otherwise."""
        if self.split_tag and "." in name:
            arch, _, tag = name.partition(".")
            return arch, tag
        return name, None

    def refuse(self, scheme: str, name: str, revision: str | None = None) -> str | None:
        """Why ``SCHEME:NAME[@REVISION]`` is not in this grammar, or None."""
        if revision and not self.revisions:
            return self.no_revisions.format(scheme=scheme)
        if not self.pattern.fullmatch(name):
            return self.refusal
        return None

    def check(self, ref: Ref) -> None:
        """Raise parse_ref's one line unless ``ref``'s name is in this grammar (where the
        provider is known: a ``Ref`` made in code was never parsed). Its revision is left
        to the provider: ``--revision`` is applied after parsing."""
        why = self.refuse(ref.scheme, ref.name)
        if why is not None:
            raise _bad(str(ref), why, f"{ref.scheme}:{self.form}")


# The grammar of a provider that declares none (and of a scheme no provider answers).
GENERIC = NameGrammar(
    "NAME[@REVISION]", _NAME_OR_REPO, "the name holds characters no provider accepts"
)

# Where the registered providers' grammars come from: a callable answering scheme ->
# grammar for the providers that declare one. zoo.contract.plugins answers (loading the
# plugins on first use), so refs imports no plugin code.
_grammar_source: Callable[[], Mapping[str, NameGrammar]] | None = None
_unasked = threading.local()  # depth > 0: this thread is loading plugins


def answer_grammars(source: Callable[[], Mapping[str, NameGrammar]] | None) -> None:
    """Tell :func:`parse_ref` where the registered providers' grammars come from."""
    global _grammar_source
    _grammar_source = source


@contextlib.contextmanager
def grammars_unasked() -> Iterator[None]:
    """While plugins load on this thread, :func:`parse_ref` asks for no grammar (asking
    would load them again): a plugin parsing a reference then gets the shared grammar."""
    _unasked.depth = getattr(_unasked, "depth", 0) + 1
    try:
        yield
    finally:
        _unasked.depth -= 1


def registered_grammars() -> Mapping[str, NameGrammar] | None:
    """The registered providers' declared grammars by scheme; None when none can be had."""
    if _grammar_source is None or getattr(_unasked, "depth", 0) > 0:
        return None
    return _grammar_source()


def forms(grammars: Mapping[str, NameGrammar] | None = None) -> str:
    """The forms error lines offer: the registered providers' (zoo's own first, in their
    usual order, then the others by name) and the registered models'; :data:`FORMS` when
    no plugin manager answers."""
    known = registered_grammars() if grammars is None else grammars
    if known is None:
        return FORMS
    usual = [scheme for scheme, _ in _BUILTIN_FORMS]
    schemes = sorted(known, key=lambda s: (usual.index(s) if s in usual else len(usual), s))
    return ", ".join([*(f"{s}:{known[s].form}" for s in schemes), _MODELS_FORMS])


@dataclass(frozen=True)
class Ref:
    """A parsed reference. ``scheme`` is the provider name, ``models`` or ``bare``."""

    scheme: str
    name: str  # timm: "resnet50.a1_in1k"; hf: "timm/resnet50.a1_in1k"; models: the model name
    revision: str | None = None  # @REV for providers with revisions (hf, timm)
    version: str | None = None  # models:/NAME/VERSION ("latest" allowed)
    alias: str | None = None  # models:/NAME@ALIAS
    # the provider's grammar it was parsed with (not part of its identity); None: the
    # registered provider's, looked up when needed
    grammar: NameGrammar | None = field(default=None, compare=False, repr=False)

    @property
    def is_registered(self) -> bool:
        return self.scheme == "models"

    def _grammar(self) -> NameGrammar:
        if self.grammar is not None:
            return self.grammar
        if self.scheme in ("models", "bare"):
            return GENERIC
        return (registered_grammars() or {}).get(self.scheme, GENERIC)

    @property
    def arch(self) -> str:
        """Architecture part for tagged grammars (timm's, torchvision's); the name elsewhere."""
        return self._grammar().split(self.name)[0]

    @property
    def tag(self) -> str | None:
        return self._grammar().split(self.name)[1]

    def with_revision(self, revision: str | None) -> Ref:
        """Apply ``--revision``; a different ``@REV`` already in the reference is an error."""
        if revision is None:
            return self
        if self.revision is not None and self.revision != revision:
            raise BadReferenceError(
                f"'{self}' pins revision {self.revision} but --revision says {revision}: "
                "give only one of them"
            )
        return Ref(self.scheme, self.name, revision=revision, grammar=self.grammar)

    def __str__(self) -> str:
        if self.scheme == "bare":
            return self.name
        if self.scheme == "models":
            if self.alias is not None:
                return f"models:/{self.name}@{self.alias}"
            return f"models:/{self.name}/{self.version or 'latest'}"
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.scheme}:{self.name}{rev}"


def _bad(text: str, why: str, form: str) -> BadReferenceError:
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


def parse_ref(text: str, *, grammars: Mapping[str, NameGrammar] | None = None) -> Ref:
    """Parse a reference; the error says which form to use instead.

    A provider reference's name is checked against its provider's grammar: from
    ``grammars`` (scheme -> grammar) when given, else the registered providers'
    (:func:`registered_grammars`); a scheme with none gets :data:`GENERIC`.
    """
    text = text.strip()

    def bad(why: str, form: str | None = None) -> BadReferenceError:
        return _bad(text, why, form or forms(grammars))

    if not text:
        raise bad("it is empty")
    if JOINER in text:
        raise bad(
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
            raise bad("it has no provider prefix")
        if not _MODEL_NAME.match(text):
            raise bad("a bare name may hold letters, digits, '_', '-', '.' only")
        if len(text) > MAX_NAME_LENGTH:
            raise _too_long(text)
        return Ref("bare", text)
    scheme, rest = m.group("scheme"), m.group("rest")
    name, _, revision = rest.partition("@")
    if "@" in rest and not revision:
        raise bad("'@' must be followed by a revision", f"{scheme}:NAME@REVISION")
    if revision and not _REVISION.match(revision):
        raise bad(f"'{revision}' is not a revision", f"{scheme}:NAME@REVISION")
    if not name:
        raise bad(f"nothing follows '{scheme}:'")
    declared = (registered_grammars() if grammars is None else grammars) or {}
    grammar = declared.get(scheme)
    why = (grammar or GENERIC).refuse(scheme, name, revision or None)
    if why is not None:  # a declared grammar names its own form; GENERIC lists them all
        raise bad(why, f"{scheme}:{grammar.form}" if grammar is not None else None)
    if len(name) > MAX_NAME_LENGTH:
        raise _too_long(text)
    return Ref(scheme, name, revision=revision or None, grammar=grammar)


def _parse_models(text: str) -> Ref:
    form = _MODELS_FORMS
    if not text.startswith("models:/"):
        raise _bad(text, "registered models are written with a slash after 'models:'", form)
    body = text[len("models:/") :]
    if "@" in body:
        name, _, alias = body.partition("@")
        if not _ALIAS.fullmatch(alias):
            raise _bad(text, "an alias holds letters, digits, '_', '-' only", form)
        if not name or not _MODEL_NAME.fullmatch(name):
            raise _bad(text, "the model name is missing or malformed", form)
        return Ref("models", name, alias=alias)
    name, slash, version = body.rpartition("/")
    if not slash:
        raise _bad(text, "the version is missing", form)
    if not name or "/" in name or not _MODEL_NAME.fullmatch(name):
        raise _bad(text, "the model name is missing or malformed", form)
    if not _VERSION.match(version):
        raise _bad(text, f"'{version}' is not a version number or 'latest'", form)
    if version != "latest" and (len(version) > 10 or int(version) > MAX_VERSION):
        raise _bad(text, f"version {version[:20]} is past the largest ({MAX_VERSION})", form)
    if len(name) > MAX_NAME_LENGTH:
        raise _too_long(text)
    return Ref("models", name, version=version)
