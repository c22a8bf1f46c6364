"""zoo provider plugin for checkpoints the user imported with `zoo import` (local:NAME).

Each import is a folder ``$ZOO_HOME/local/NAME/`` holding ``model.safetensors`` (the
tensors under the architecture's own names) and ``record.json`` (architecture reference,
licence, source file and hashes, input config). Building one builds the architecture
through its own provider, without weights, and loads the imported tensors into it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import zoo
from zoo import BackboneInfo, Ref, UnknownModelError


class LocalProvider:
    """Models imported with `zoo import`, served like any other backbone."""

    name = "local"
    grammar = zoo.NameGrammar.simple(  # local:NAME, no @REV
        revisions=False,
        refusal="a local name holds letters, digits, '_', '-', '.' only",
        no_revisions="local models have no revisions",
    )
    cache_index = False  # the index is a folder listing: cheap, and changes on every import

    def version(self) -> str:
        return zoo.__version__

    def index(self) -> Iterable[BackboneInfo]:
        for model in zoo.local_models():
            yield model.info

    def _model(self, ref: Ref) -> Any:
        try:
            return zoo.local_model(ref.name)
        except zoo.NotFoundError as exc:
            raise UnknownModelError(str(exc)) from None

    def describe(self, ref: Ref) -> BackboneInfo:
        return self._model(ref).info

    def pull(self, ref: Ref, *, force: bool = False, progress: Any = None) -> zoo.PulledWeights:
        """Nothing to fetch: the imported file, checked against the hash of its import."""
        model = self._model(ref)
        digest = zoo.sha256_file(model.weights)
        if digest != model.sha256:
            raise zoo.IntegrityError(
                f"{model.weights} no longer matches the SHA-256 recorded at import "
                f"({model.sha256}): import the checkpoint again"
            )
        return zoo.PulledWeights(
            reference=model.reference,
            provider="local",
            revision=None,
            files=(zoo.FileRecord("model.safetensors", model.weights, digest, model.size),),
            license=model.license,
            source=model.source,
            pulled_at=model.imported_at,
            extra={"storage": "local", "arch": model.arch},
        )

    def build(
        self, ref: Ref, *, num_classes: int | None = None, pretrained: bool = True
    ) -> zoo.ModuleBackbone:
        """The architecture from its provider (no download) with the imported tensors; a
        given ``num_classes`` gets a fresh head and every other tensor is loaded."""
        model = self._model(ref)
        width = num_classes if num_classes is not None else model.num_classes
        base = zoo.build_backbone(model.arch, num_classes=width, pretrained=False)
        weights_sha256 = None
        if pretrained:
            pulled = self.pull(ref)
            tensors = zoo.load_state_dict(pulled.weights_file.path)
            if num_classes is not None and num_classes != model.num_classes:
                head = {id(p) for p in base.stages()[-1][1].parameters()}
                head_keys = {n for n, p in base.model.named_parameters() if id(p) in head}
                tensors = {k: v for k, v in tensors.items() if k not in head_keys}
                missing, unexpected = base.model.load_state_dict(tensors, strict=False)
                if set(missing) - head_keys or unexpected:
                    raise zoo.IntegrityError(
                        f"local:{ref.name} no longer fits {model.arch}: import it again"
                    )
            else:
                base.model.load_state_dict(tensors, strict=True)
                if num_classes is not None:  # same width, but a new head was asked for
                    for module in base.stages()[-1][1].modules():
                        reset = getattr(module, "reset_parameters", None)
                        if callable(reset):
                            reset()
            weights_sha256 = pulled.weights_file.sha256
        from dataclasses import replace

        info = replace(model.info, num_classes=width, pretrained=pretrained)
        return zoo.ModuleBackbone(
            info, base.model, list(base.stages()), weights_sha256=weights_sha256
        )


@zoo.hookimpl
def register_providers(register: Any) -> None:
    register(LocalProvider())
