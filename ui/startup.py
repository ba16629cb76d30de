"""Start-up time: skip gradio's stub writing, which is half of `import gradio`.

Gradio 6.31's component metaclass calls `create_or_modify_pyi` for every component class it
defines: it reads the class's source file and its .pyi stub, parses both with `ast`, and rewrites
the stub when they differ. The stubs only serve editors' type hints for gradio's own developers
(the wheel ships them); the events themselves are added before that call. On a 2-core machine it
is ~3 s of a ~5.5 s import. `skip_stub_writing()`, called before gradio is first imported, makes
that call do nothing; if gradio is already imported it changes nothing.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

MODULE = "gradio.component_meta"


class _SkipStubWriting(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            if hasattr(module, "create_or_modify_pyi"):
                module.create_or_modify_pyi = lambda *args, **kwargs: None

        spec.loader.exec_module = exec_module
        return spec


def skip_stub_writing() -> None:
    if MODULE not in sys.modules and not any(isinstance(f, _SkipStubWriting) for f in sys.meta_path):
        sys.meta_path.insert(0, _SkipStubWriting())
