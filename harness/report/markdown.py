"""The markdown leaderboard: a headline across tasks, then per task accuracy, costs, cells and tests."""

from __future__ import annotations

import pandas as pd

from harness.report import display
from harness.report.tables import Leaderboard


def _table(frame: pd.DataFrame) -> str:
    return frame.to_markdown(index=False, disable_numparse=True)


def leaderboard_markdown(board: Leaderboard, experiment: str, generated: str) -> str:
    lines = [f"# Leaderboard: {experiment}", "", generated, "", *_paragraphs(display.how_to_read(board)),
             *_paragraphs(display.ceiling_notes(board))]
    if board.tasks:
        lines += ["## Headline", "", *_paragraphs(display.headline_notes(board)), _table(display.headline_table(board)),
                  ""]
    for task in board.tasks:
        if not board.has_cells(task):
            lines += [f"## {task}", "", display.NO_CELLS, ""]
            continue
        lines += [f"## {task}", "", *_paragraphs(display.task_notes(board, task)),
                  _table(display.accuracy_table(board, task)), ""]
        budget = display.budget_table(board, task)
        if budget is not None:
            lines += ["Score (mean over lengths, failures as 0) against the state budget:", "", _table(budget), ""]
        lines += [f"### {task}: costs and training", "", *_paragraphs(display.cost_notes(board, task)),
                  _table(display.cost_table(board, task)), ""]
        note = display.training_note(board, task)
        if note:
            lines += [note, ""]
        tuning = display.tuning_table(board, task)
        if tuning is not None:
            lines += [f"### {task}: learning-rate tuning", "", display.tuning_note(board, task), "", _table(tuning), ""]
        detail = display.detail_table(board, task)
        if detail is not None:
            lines += [f"### {task}: by cell", "", f"{board.metric(task)} per cell, mean over seeds:", "",
                      _table(detail), ""]
        tests = display.tests_table(board, task)
        if not tests.empty:
            lines += [f"### {task}: head to head", "", *_paragraphs(display.test_notes(board, task)), _table(tests), ""]
    unfinished = board.runs[board.runs["status"] != "ok"]
    if not unfinished.empty:
        lines += ["## Runs without results", "", _table(unfinished_table(unfinished)), ""]
    lines += [display.methods_text(), ""]
    return "\n".join(lines)


def unfinished_table(unfinished: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"run": unfinished["run_id"], "configuration": unfinished["row"], "task": unfinished["task"],
                         "seed": unfinished["seed"], "status": unfinished["status"],
                         "error": [(r.get("error") or "").splitlines()[0] if r.get("error") else ""
                                   for r in unfinished["record"]]})


def _paragraphs(texts: list[str]) -> list[str]:
    return [line for text in texts for line in (text, "")]
