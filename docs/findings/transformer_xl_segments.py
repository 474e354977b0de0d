"""Evaluate a stored run at other segment lengths and both scorings, with no training.

The segment length decides what a query reads through the memory (earlier segments, read as
states computed without the query's gradient) and what it reads directly (its own segment); a
generated answer is read one token at a time, so each of its tokens sees only the memory.
Evaluating one trained model every way separates "the model cannot find the needle at that
distance" from "the needle cannot be found through the memory". Used by
docs/findings/transformer-xl-depth.md:

    python docs/findings/transformer_xl_segments.py results/<experiment>/<run_id> 64 128
"""

from __future__ import annotations

import sys
from pathlib import Path

from omegaconf import OmegaConf

from harness.config import RunConfig
from harness.engine.evaluate import evaluate
from harness.engine.plan import prepare
from harness.store.records import CONFIG_FILE
from harness.taskkit.task import SCORINGS
from harness.store.weights import load_weights


def main(run_dir: Path, segment_lengths: list[int]) -> None:
    stored = OmegaConf.load(run_dir / CONFIG_FILE)
    plan = prepare(OmegaConf.merge(OmegaConf.structured(RunConfig), stored, {"results_dir": str(run_dir.parent.parent)}))
    load_weights(plan.model, run_dir)
    print("scoring | segment_len | " + " | ".join(f"L={cell['context_len']} d={cell['depth']}"
                                                  for cell in plan.task.evaluation_cells(plan.config.eval.grid)))
    for scoring in SCORINGS:
        plan.config.eval.scoring = scoring
        for segment_len in segment_lengths:
            cells, _ = evaluate(plan.model, plan.task, plan.config.eval, segment_len, plan.device, progress=False)
            scores = [cell["value"] for cell in cells if cell["metric"] == plan.task.primary_metric]
            print(f"{scoring} | {segment_len} | " + " | ".join(f"{score:.2f}" for score in scores))


if __name__ == "__main__":
    main(Path(sys.argv[1]), [int(value) for value in sys.argv[2:]])
