"""Cost of the own-model audit path with preset ``own-model-cpu`` on this machine.

Clones the project's committed HEAD into a temporary folder and, there, as a user would:

1. trains a torchvision ResNet-18 (CIFAR stem) on digits with a plain script outside the
   pipeline (the script of ``tests/pipeline/test_own_model.py``, 3 epochs);
2. writes a 20-sample forget list and a 10-sample second request;
3. applies ``unlearn preset own-model-cpu`` and sets ``data.forget``, ``model`` and
   ``requests`` for that model;
4. times ``dvc repro audit``, stage by stage.

MLflow writes to a temporary sqlite store. Run from anywhere, on idle cores (about 5-10
minutes):

    python benchmarks/own_model_cpu.py [--keep]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_repro import run, scratch_folder, stage_env  # noqa: E402
from tests.pipeline.test_own_model import USER_SCRIPT, _train_indices  # noqa: E402

SETTINGS = {"data": {"forget": {"mode": "list", "file": "data/user/forget/request1.csv", "fraction": None}},
            "model": {"name": "torchvision:resnet18", "cifar_stem": True},
            "original": {"checkpoint": "data/user/models/mine.pt"},
            "requests": {"files": ["data/user/forget/request2.txt"], "methods": ["amun", "ft"]},
            "audit": {"method": "amun"}}


def bench(tmp: Path) -> list[tuple[str, float]]:
    import yaml

    from unlearn_pipeline.presets import apply

    repo, venv_bin = tmp / "repo", ROOT / ".venv" / "bin"
    run(["git", "clone", "--quiet", str(ROOT), str(repo)], cwd=tmp)
    env = stage_env(venv_bin, repo, tmp)
    rows = [("user script: ResNet-18, 3 epochs on digits", run([str(venv_bin / "python"), "-c", USER_SCRIPT],
                                                               cwd=repo, env=env)[0])]
    (repo / "data/user/forget/request1.csv").write_text(
        "index\n" + "".join(f"{i}\n" for i in _train_indices(20)))
    (repo / "data/user/forget/request2.txt").write_text("\n".join(map(str, _train_indices(10, skip=40))) + "\n")
    params = repo / "params.yaml"
    preset = yaml.safe_load((repo / "presets" / "own-model-cpu.yaml").read_text())
    params.write_text(apply(apply(params.read_text(), preset), SETTINGS))
    seconds, _, stages = run([str(venv_bin / "dvc"), "repro", "audit"], cwd=repo, env=env)
    rows.append((f"dvc repro audit ({len(stages)} stages)", seconds))
    rows.extend((f"&nbsp;&nbsp;stage {name}", stage_s) for name, stage_s in stages)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = parser.parse_args()
    start = time.perf_counter()
    with scratch_folder("bench-own-model-", args.keep) as tmp:
        rows = bench(tmp)
        print("| what | seconds |\n|---|---:|")
        for what, seconds in rows:
            print(f"| {what} | {seconds:.1f} |")
        print(f"\nwall clock in all: {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
