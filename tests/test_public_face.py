"""zoo's public face (zoo/__init__.py): light to import, and every name it promises there."""

from __future__ import annotations

import pytest

from clihelp import modules_imported_by

HEAVY = ("torch", "timm", "torchvision", "mlflow", "onnx", "onnxruntime", "rich", "numpy")


def test_import_zoo_imports_no_heavy_library_and_no_process_pool() -> None:
    assert modules_imported_by("import zoo", (*HEAVY, "concurrent.futures")) == []


def test_every_public_name_resolves_and_is_what_its_module_defines() -> None:
    import importlib

    import zoo

    for name in zoo.__all__:
        value = getattr(zoo, name)
        if name in zoo._LAZY:
            module, attribute = zoo._LAZY[name]
            assert value is getattr(importlib.import_module(module), attribute), name
    assert set(zoo._LAZY) <= set(zoo.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    import zoo

    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        zoo.no_such_name  # noqa: B018
