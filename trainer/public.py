"""What may leave the server: text without this server's folders in it.

One scrubber for every message a page, an API answer or a downloaded file may carry (a worker's
error, a refusal, a saved model's warnings): each folder of this server that such text could name
(the project, the home folder, Python's prefix, the data, models, workspaces and cache folders, the
frameworks' weight caches) is replaced by "…", the longest first, so a folder inside another goes
with it. No framework import.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDER_VARIABLES = ("AVP_DATA_DIR", "AVP_MODELS_DIR", "AVP_WORKSPACES_DIR", "AVP_CACHE_DIR", "TORCH_HOME",
                    "KERAS_HOME", "XDG_CACHE_HOME", "TMPDIR")


def server_folders() -> list[str]:
    """This server's folders that a message could name, longest first."""
    folders = {str(ROOT), str(Path.home()), sys.prefix, sys.base_prefix, str(Path.cwd())}
    for variable in FOLDER_VARIABLES:
        if os.environ.get(variable):
            folders.add(str(Path(os.environ[variable]).expanduser().resolve()))
            folders.add(os.environ[variable])
    return sorted((f for f in folders if f not in ("", ".", "/")), key=len, reverse=True)


def text(message: str) -> str:
    """`message` with every server folder replaced by "…"."""
    for folder in server_folders():
        message = message.replace(folder, "…")
    return message
