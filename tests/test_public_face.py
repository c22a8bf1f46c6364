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


def test_the_public_face_names_no_onnx_symbol() -> None:
    import zoo

    onnx_names = [n for n in (*zoo.__all__, *zoo._LAZY) if "onnx" in n.lower()]
    assert onnx_names == [] and zoo.PLUGIN_API >= 3  # API 3 took them out


@pytest.mark.parametrize(
    ("name", "module"), [("OnnxModel", "zoo_onnx.runtime"), ("export_onnx", "zoo_onnx.export")]
)
def test_a_moved_name_warns_and_is_the_plugins_while_zoo_onnx_is_installed(
    name: str, module: str
) -> None:
    import importlib

    import zoo

    with pytest.warns(DeprecationWarning, match=rf"zoo\.{name} moved to the zoo-onnx") as seen:
        value = getattr(zoo, name)
    assert value is getattr(importlib.import_module(module), name)
    assert seen[0].filename == __file__  # the warning points at the caller's line
    with pytest.warns(DeprecationWarning):  # not kept: every access warns
        getattr(zoo, name)


@pytest.mark.parametrize("name", ["OnnxModel", "export_onnx"])
def test_a_moved_name_without_zoo_onnx_says_in_one_line_what_to_install(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import zoo

    monkeypatch.setitem(sys.modules, "zoo_onnx", None)  # what find_spec says when absent
    with pytest.raises(AttributeError) as raised:
        getattr(zoo, name)
    message = str(raised.value)
    assert "\n" not in message and "pip install zoo-onnx" in message
    assert "-e plugins/zoo-onnx" in message and f"zoo_onnx.{name}" in message
    assert not hasattr(zoo, name)
