"""Per-optimizer-step cost of training telemetry: `Telemetry.step` with TensorBoard on vs off, interleaved.

    .venv/bin/python benchmarks/telemetry_step.py

Each round opens a fresh run folder, makes 300 step calls with a 2 ms gap between them (a training step, during
which TensorBoard's writer thread drains its queue) and times only the calls. Off is the baseline: the same calls
with `tracking.tensorboard=false` (no backend at all). Five rounds of each, alternating; medians reported.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from chexvision.config import load_config
from chexvision.engine.telemetry import Telemetry


def round_cost(tensorboard: bool, steps: int = 300, gap: float = 0.002) -> float:
    """Mean microseconds per `Telemetry.step` call over one round."""
    cfg = load_config("smoke", None, [f"tracking.tensorboard={'true' if tensorboard else 'false'}"])
    with tempfile.TemporaryDirectory() as d:
        tel = Telemetry.open(cfg, Path(d), 0, steps_per_epoch=steps)
        tel.start_epoch(1)
        spent = 0.0
        for i in range(1, steps + 1):
            time.sleep(gap)
            t = time.perf_counter()
            tel.step(step=i, loss=1.0 / i, lr=1e-3, images_per_second=100.0)
            spent += time.perf_counter() - t
        tel.finish("complete")
    return spent / steps * 1e6


def main() -> None:
    round_cost(True, 20)  # warm-up: imports
    on: list[float] = []
    off: list[float] = []
    for _ in range(5):
        off.append(round_cost(False))
        on.append(round_cost(True))
    print(f"TensorBoard off (baseline): median {statistics.median(off):.1f} us/step {[round(x, 1) for x in off]}")
    print(f"TensorBoard on:             median {statistics.median(on):.1f} us/step {[round(x, 1) for x in on]}")


if __name__ == "__main__":
    main()
