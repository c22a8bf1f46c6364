"""ONNX Runtime: the execution providers, the sessions the gates open, and ``OnnxModel``,
what ``zoo predict`` and the MLflow pyfunc run an ONNX export with (the exporter's
``open``).

Providers: TensorRT, then CUDA, then CPU, among those the installed onnxruntime offers.
GPU builds come from the ``onnxruntime-gpu`` wheel (installed in place of
``onnxruntime``); without one every request degrades to CPU with one line saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import zoo

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

__all__ = [
    "PROVIDERS",
    "OnnxModel",
    "choose_providers",
    "gate_providers",
    "session",
]

# --provider value -> ONNX Runtime execution providers, best first.
PROVIDERS: dict[str, tuple[str, ...]] = {
    "tensorrt": ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "cpu": ("CPUExecutionProvider",),
}
PROVIDERS["auto"] = PROVIDERS["tensorrt"]
_GPU = frozenset({"TensorrtExecutionProvider", "CUDAExecutionProvider"})


def choose_providers(
    requested: str = "auto", available: Sequence[str] | None = None
) -> tuple[list[str], str | None]:
    """ONNX Runtime providers for a --provider value, and a note when it had to degrade."""
    if requested not in PROVIDERS:
        raise zoo.UsageError(f"unknown provider '{requested}': use {', '.join(PROVIDERS)}")
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    chosen = [p for p in PROVIDERS[requested] if p in available]
    note = None
    if requested != "cpu" and not any(p in _GPU for p in chosen):
        note = (
            f"--provider {requested}: this onnxruntime has no GPU provider, running on CPU "
            "(GPU users: pip install onnxruntime-gpu in place of onnxruntime)"
        )
    elif requested == "tensorrt" and "TensorrtExecutionProvider" not in chosen:
        note = "--provider tensorrt: TensorRT is not available, running on CUDA"
    return chosen, note


def gate_providers(available: Sequence[str] | None = None) -> list[str]:
    """The execution providers ``zoo predict`` may run on with this onnxruntime: the
    first available one of each ``--provider`` choice (CPU always; CUDA and TensorRT
    with onnxruntime-gpu)."""
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    out: list[str] = []
    for chain in PROVIDERS.values():
        head = next((p for p in chain if p in available), None)
        if head is not None and head not in out:
            out.append(head)
    return sorted(out, key=lambda p: p != "CPUExecutionProvider")  # CPU first


def session(model: Path | bytes, provider: str = "CPUExecutionProvider") -> Any:
    """A quiet session as ``zoo predict`` opens one: ``provider`` first, then its
    fallbacks (``model``: a file, or a serialized graph)."""
    import onnxruntime as ort

    chain = next((c for c in PROVIDERS.values() if c[0] == provider), (provider,))
    available = ort.get_available_providers()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    providers = [p for p in chain if p in available] or ["CPUExecutionProvider"]
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=providers)


class OnnxModel:
    """An ONNX Runtime session for a classifier: one input batch in, logits out.

    On a GPU provider inputs and outputs go through IO binding (one copy each way, no
    per-call allocation of the output on the host). ``input_shape`` and ``output_width``
    are the graph's fixed dimensions, which ``zoo predict`` checks the export's sidecar
    against.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        provider: str = "auto",
        preprocessing: Any = None,  # zoo's Preprocessing (zoo.preprocessing_from)
        class_names: Sequence[str] = (),
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.providers, self.note = choose_providers(provider)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=self.providers
            )
        except Exception as exc:  # onnxruntime raises its own unrelated exception types
            raise zoo.DataError(f"ONNX Runtime cannot load {self.path}: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.preprocessing = preprocessing
        self.class_names = tuple(class_names)
        self.on_gpu = self.session.get_providers()[0] in _GPU

    @property
    def provider(self) -> str:
        return str(self.session.get_providers()[0])

    @property
    def input_shape(self) -> tuple[int | None, ...]:
        """One input's dimensions after the batch (None where the graph leaves one free)."""
        shape = list(self.session.get_inputs()[0].shape)[1:]
        return tuple(d if isinstance(d, int) and d > 0 else None for d in shape)

    @property
    def output_width(self) -> int | None:
        """The logits' last dimension when the graph fixes it."""
        shape = list(self.session.get_outputs()[0].shape)
        width = shape[-1] if shape else None
        return width if isinstance(width, int) and width > 0 else None

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Logits for a (N, C, H, W) float32 batch."""
        import numpy as np

        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if not self.on_gpu:
            return np.asarray(self.session.run([self.output_name], {self.input_name: batch})[0])
        binding = self.session.io_binding()
        binding.bind_cpu_input(self.input_name, batch)
        binding.bind_output(self.output_name, "cuda")
        self.session.run_with_iobinding(binding)
        return np.asarray(binding.copy_outputs_to_cpu()[0])
