"""The whole bench: `python tests/bench_app.py --data DIR [--limit N] ...` (the flags of
`python -m trainer bench`).

Runs the library's training measurements (trainer/bench.py), then drives a live app with the
models they saved (tests/support/appbench.py): its start-up (median of three), the first chart
point after Start at the Train tab's defaults, the first and an identical second default run, and
its peak memory. Prints one table and one JSON line with all the figures. Lives beside the tests:
it needs the repository's app.py and the test tools, which the library does not.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # support/, as under pytest

from support import appbench  # noqa: E402
from trainer import bench, cli, data, frameworks  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    args = cli.build_parser().parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    with tempfile.TemporaryDirectory() as models:
        figures, config = bench.training_figures(args, models)
        app = appbench.app_figures(models, config)
    figures.update({key: app[key] for key in ("first_chart_point_s", "first_chart_point_at_start_s",
                                              "warm_worker_ready_s", "peak_rss_mb", "first_run_s",
                                              "first_point_warm_s", "second_run_s")})
    figures["app_ready_s"], figures["app_ready_each_s"] = float(np.median(app["app_ready_each_s"])), \
        app["app_ready_each_s"]
    # The cold default run's pure forward work: every epoch's training images and the validation
    # images once, per framework, at the best engine's speed measured above.
    dataset = data.discover(config.data_dir, config.seed)
    figures["forward_work_s"] = sum((appbench.defaults().epochs * len(dataset.train) + len(dataset.val))
                                    / figures[name]["limit_img_s"] for name in frameworks.ORDER)
    bench.report(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
