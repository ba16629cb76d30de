"""Start-up time: two pieces of work `import gradio` does for its own developers, skipped.

Most of gradio's import time goes to two of them (the README's Speed section has the figures):
- Its component metaclass calls `create_or_modify_pyi` for every component class: it reads the
  class's source file and its .pyi stub, parses both with `ast`, and rewrites the stub when they
  differ (into site-packages, at run time). The stubs only serve editors' type hints, and the
  wheel ships them; the events themselves are added before that call. Skipped.
- Each event listener's docstring is rendered as a jinja2 template whose only placeholder is
  `{{ component }}`. Rendered with `str.replace` instead: the same text.
`speed_up_gradio_import()`, called before gradio is first imported, applies both as the modules
load; if gradio is already imported it changes nothing.

Both patch private gradio functions, read from the pinned version (GRADIO_PIN, kept equal to
requirements.txt by tests/test_startup.py, which also checks every rendered docstring against
gradio's own jinja2 rendering). With any other gradio installed, start-up says so on stderr, and
each patch that finds nothing to patch says so too.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.metadata
import sys
import warnings

GRADIO_PIN = "6.31.0"  # the gradio these patches were written for and tested with (requirements.txt)
PLACEHOLDER = "{{ component }}"


class GradioPatchWarning(UserWarning):
    """ui/startup.py's patches may not fit the installed gradio."""


def _warn(message: str) -> None:
    warnings.warn(f"ui/startup.py: {message}", GradioPatchWarning, stacklevel=2)


def check_gradio_version() -> str | None:
    """Warn when the installed gradio is not GRADIO_PIN; return the installed version (None: none)."""
    try:
        installed = importlib.metadata.version("gradio")
    except importlib.metadata.PackageNotFoundError:
        return None
    if installed != GRADIO_PIN:
        _warn(f"it patches private functions of gradio {GRADIO_PIN}, but gradio {installed} is installed: "
              "run tests/test_startup.py, then update GRADIO_PIN and requirements.txt together")
    return installed


def _skip_stub_writing(module) -> None:
    if not hasattr(module, "create_or_modify_pyi"):
        return _warn("gradio.component_meta.create_or_modify_pyi is gone: stub writing not skipped")
    module.create_or_modify_pyi = lambda *args, **kwargs: None


def _plain_event_docs(module) -> None:
    listener = getattr(module, "EventListener", None)
    if listener is None or not hasattr(listener, "set_doc"):
        return _warn("gradio.events.EventListener.set_doc is gone: event docs rendered by gradio")
    render_with_jinja = listener.set_doc

    def set_doc(self, component: str):
        doc = self.listener.__doc__ or ""
        if "{%" in doc or doc.count("{{") != doc.count(PLACEHOLDER):
            return render_with_jinja(self, component)  # anything but the one placeholder
        self.listener.__doc__ = doc.replace(PLACEHOLDER, component) or None

    listener.set_doc = set_doc


PATCHES = {"gradio.component_meta": _skip_stub_writing, "gradio.events": _plain_event_docs}


class _PatchOnLoad(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loading of the modules in PATCHES to patch them once run."""

    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            PATCHES[name](module)

        spec.loader.exec_module = exec_module
        return spec


def speed_up_gradio_import() -> None:
    if "gradio" not in sys.modules and not any(isinstance(f, _PatchOnLoad) for f in sys.meta_path):
        check_gradio_version()
        sys.meta_path.insert(0, _PatchOnLoad())
