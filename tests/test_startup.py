"""ui/startup.py: its patches of gradio's import give the same events and docs, and it says when
the installed gradio is not the one they were written for."""

import json
import re
import subprocess
import sys
import warnings

import pytest

from conftest import ROOT
from ui import startup

# In a fresh process (gradio not yet imported): install the patches, import gradio, and for every
# event of every component class, compare the docstring the class got with gradio's own rendering,
# jinja2 on the event's unrendered doc (what `EventListener.copy()` starts from).
COMPARE_EVERY_EVENT_DOC = """
import json, sys
from ui.startup import speed_up_gradio_import
speed_up_gradio_import()
import gradio, jinja2
from gradio.blocks import Block
from gradio.component_meta import ComponentMeta

def subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)

compared, different = 0, []
for cls in set(subclasses(Block)):
    if not isinstance(cls, ComponentMeta) or "EVENTS" not in vars(cls):
        continue
    for trigger in cls.EVENTS:
        template = trigger.copy().listener.__doc__
        expected = jinja2.Template(template).render(component=cls.__name__) if template else template
        if vars(cls)[trigger.event_name].__doc__ != expected:
            different.append(f"{cls.__name__}.{trigger.event_name}")
        compared += 1
print(json.dumps({"compared": compared, "different": different,
                  "stubs_skipped": gradio.component_meta.create_or_modify_pyi.__name__ == "<lambda>"}))
"""


def test_every_event_doc_is_rendered_as_gradio_renders_it():
    result = subprocess.run([sys.executable, "-c", COMPARE_EVERY_EVENT_DOC], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["stubs_skipped"] and report["compared"] > 100
    assert report["different"] == []


def test_the_pin_is_the_one_in_requirements():
    pins = dict(re.findall(r"^([\w-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE))
    assert pins["gradio"] == startup.GRADIO_PIN


def test_another_gradio_version_is_reported(monkeypatch):
    monkeypatch.setattr(startup.importlib.metadata, "version", lambda name: "99.0.0")
    with pytest.warns(startup.GradioPatchWarning, match=r"gradio 6\.\d+\.\d+, but gradio 99\.0\.0 is installed"):
        assert startup.check_gradio_version() == "99.0.0"


def test_the_pinned_version_is_not_reported(monkeypatch):
    monkeypatch.setattr(startup.importlib.metadata, "version", lambda name: startup.GRADIO_PIN)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert startup.check_gradio_version() == startup.GRADIO_PIN
