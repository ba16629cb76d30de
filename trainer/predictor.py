"""Load the saved models of a models folder once, and predict with all of them side by side.

Used by `python -m trainer predict` and by the app's Predict tab. `Predictor.refresh()` reloads a
model only when its metadata.json changed on disk (a training finished), so a long-running app
always predicts with the newest models without reloading them on every request.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from trainer import data, frameworks, store
from trainer.frameworks import backend


class Predictor:
    def __init__(self, models_dir: str | Path):
        self.models_dir = Path(models_dir)
        self.loaded: dict[str, tuple[object, dict, float]] = {}  # framework -> (model, metadata, mtime)
        self.lock = threading.Lock()

    def refresh(self) -> dict[str, dict]:
        """(Re)load models whose files changed; return framework -> metadata of those present."""
        with self.lock:
            found = store.find_models(self.models_dir)
            for framework in frameworks.NAMES:
                if framework not in found:
                    self.loaded.pop(framework, None)
                    continue
                mtime = (found[framework] / store.METADATA).stat().st_mtime
                if framework not in self.loaded or self.loaded[framework][2] != mtime:
                    model, metadata = backend(framework).load(found[framework])
                    warm_up(framework, model, metadata)
                    self.loaded[framework] = (model, metadata, mtime)
            return {fw: meta for fw, (_, meta, _) in self.loaded.items()}

    def refresh_in_background(self) -> None:
        """Start a refresh in a thread unless one is running; its errors wait for `refresh()`."""
        if not self.lock.locked():
            threading.Thread(target=self._refresh_quietly, daemon=True).start()

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except Exception:  # noqa: BLE001 - the next refresh() raises it, where it can be reported
            pass

    def saved(self) -> dict[str, dict]:
        """Framework -> metadata of the complete saved models on disk, without loading them."""
        return {fw: store.read_metadata(folder) for fw, folder in store.find_models(self.models_dir).items()}

    def missing(self) -> list[str]:
        return [fw for fw in frameworks.NAMES if fw not in self.loaded]

    def predict(self, image_rgb) -> dict[str, dict]:
        """One decoded PIL RGB image -> framework -> {"probabilities": {class: p}, "seconds": s}."""
        results = {}
        for framework, (model, metadata, _) in sorted(self.loaded.items()):
            size = metadata["config"]["image_size"]
            array = data.to_array(image_rgb, size)
            started = time.perf_counter()
            probabilities = backend(framework).predict_proba(model, array[None])[0]
            results[framework] = {
                "probabilities": {c: float(p) for c, p in zip(metadata["classes"], probabilities)},
                "seconds": time.perf_counter() - started}
        return results

    def predict_file(self, path: str | Path) -> dict[str, dict]:
        return self.predict(data.load_rgb(path))

    def explain(self, image_rgb, rank: int = 0) -> dict[str, dict]:
        """One decoded PIL RGB image -> framework -> {"class": name, "heatmap": (size, size) in
        [0, 1], "image": the uint8 image the model saw}: Grad-CAM for each model's `rank`-th most
        probable class (0: its prediction, 1: the runner-up)."""
        results = {}
        for framework, (model, metadata, _) in sorted(self.loaded.items()):
            array = data.to_array(image_rgb, metadata["config"]["image_size"])
            module = backend(framework)
            order = np.argsort(-module.predict_proba(model, array[None])[0])
            chosen = int(order[min(rank, len(order) - 1)])
            results[framework] = {"class": metadata["classes"][chosen], "image": array,
                                  "heatmap": module.gradcam(model, array[None], chosen)[0]}
        return results



def warm_up(framework: str, model, metadata: dict) -> None:
    """One prediction on a blank image, so that graph tracing and kernel selection happen at load
    time and the first user's latency is the model's, not the library's."""
    size = metadata["config"]["image_size"]
    backend(framework).predict_proba(model, np.zeros((1, size, size, 3), np.uint8))
