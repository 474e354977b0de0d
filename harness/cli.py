"""Console scripts: ``memarena`` (one run, or a sweep with -m) and ``memarena-report``.

A job trains a model (harness/engine/run.py), or with ``model=hf`` evaluates a pretrained one through a
memory policy on its KV cache (harness/pretrained/run.py); both store their records the same way.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import hydra
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from harness.config import CONF_DIR, NOT_PRETRAINED, is_pretrained, register_configs
from harness.report import DEFAULT_THRESHOLD, write_report
from harness.engine.sweep import leaderboard_line, write_job_status


def _job(cfg: DictConfig) -> None:
    from harness.engine.evaluate_stored import evaluate_stored
    from harness.engine.checks import ConfigError
    from harness.engine.run import run

    single_run = HydraConfig.get().mode == RunMode.RUN
    if is_pretrained(cfg):  # model=hf: the pretrained family (needs transformers, imported only then)
        from harness.pretrained.run import run_pretrained_job as runner
    else:
        runner = evaluate_stored if cfg.mode == "eval" else run
    try:
        record = runner(cfg)
    except KeyboardInterrupt:
        print("\nmemarena: interrupted; nothing partial was stored (finished runs are kept): "
              "rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    except ConfigError as error:
        print(f"memarena: error: {error}", file=sys.stderr)
        if single_run:
            sys.exit(2)
        record = {"status": "rejected", "error": str(error)}  # nothing stored; the sweep goes on
    write_job_status({**{key: record.get(key) for key in ("run_id", "status", "skipped", "error")},
                      **_report_location(cfg)})
    if single_run:
        print(leaderboard_line(write_report(Path(cfg.results_dir), Path(cfg.reports_dir), cfg.name)))
        if record["status"] == "failed":
            sys.exit(1)


def _report_location(cfg: DictConfig) -> dict[str, str]:
    """Where the job's experiment is stored and reported: the sweep's end regenerates those reports."""
    return {"results_dir": str(cfg.results_dir), "reports_dir": str(cfg.reports_dir), "experiment": str(cfg.name)}


def main() -> None:
    register_configs()
    if _pins_every_swept_key(sys.argv[1:]):
        sys.argv.append("hydra.mode=RUN")
    hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(_job)()


def _pins_every_swept_key(arguments: list[str]) -> bool:
    """Whether a command without -m gives one value to every key its experiment sweeps
    (``memarena mechanism=X``; with ``model=hf``, every key but those a pretrained model ignores): then it
    is one run, not a sweep of one with a multirun folder."""
    if any(argument.startswith("-") for argument in arguments):
        return False  # -m, --cfg, --config-dir, ...: left to Hydra as given
    overrides = OverridesParser.create().parse_overrides(arguments)
    if any(override.is_sweep_override() or override.key_or_group == "hydra.mode" for override in overrides):
        return False
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        config = compose("config", overrides=arguments, return_hydra_config=True)
    swept = set(config.hydra.sweeper.get("params") or {})
    pinned = {override.key_or_group for override in overrides}
    if is_pretrained(config):  # a pretrained model is not trained: a sweep over mechanisms or training is moot
        pinned |= {key for key in swept if key.split(".")[0] in NOT_PRETRAINED}
    return config.hydra.mode == RunMode.MULTIRUN and bool(swept) and swept <= pinned


def report_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="memarena-report", description="Regenerate leaderboards from the store.")
    parser.add_argument("experiments", nargs="*", help="experiment names (default: every one in the store)")
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    parser.add_argument("--reports-dir", type=Path, default=Path("reports"))
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                        help="effective context length: the longest length up to which the headline "
                             f"metric stays strictly above this (default {DEFAULT_THRESHOLD}, as RULER)")
    parser.add_argument("--compare", nargs=2, action="append", default=[], metavar=("A", "B"),
                        help="also test configuration A against B (a row's full name, label, or mechanism) in every "
                             "task that has both; repeat for more pairs")
    args = parser.parse_args(argv)
    experiments = args.experiments or sorted(
        path.name for path in args.results_dir.glob("*") if path.is_dir() and not path.name.startswith(".")
    )
    if not experiments:
        parser.error(f"no experiments in {args.results_dir}")
    for experiment in experiments:
        if not (args.results_dir / experiment).is_dir():
            parser.error(f"no experiment {experiment!r} in {args.results_dir}")
        try:
            print(write_report(args.results_dir, args.reports_dir, experiment, args.threshold,
                               tuple(tuple(pair) for pair in args.compare)))
        except ValueError as error:
            parser.error(str(error))


if __name__ == "__main__":  # python -m harness.cli, as the memarena command
    main()
