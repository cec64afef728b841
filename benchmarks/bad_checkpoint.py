"""How soon ``dvc repro audit`` refuses a bad checkpoint (target: within 20 s, issue 27).

Clones the project's committed HEAD into a temporary folder, saves a pickled module (not a
``state_dict``) as ``data/user/models/pickled.pt``, points ``original.checkpoint`` at it and
times ``dvc repro audit`` until it fails, ``--repeats`` times (a fresh clone each). Prints
the stages that ran and the error line. Run from anywhere, on idle cores (about a minute):

    python benchmarks/bad_checkpoint.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_repro import scratch_folder, stage_env  # noqa: E402

TARGET_S = 20.0


def one_try(tmp: Path) -> tuple[float, list[str], str]:
    import yaml

    repo, venv_bin = tmp / "repo", ROOT / ".venv" / "bin"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(repo)], check=True)
    env = stage_env(venv_bin, repo, tmp)
    (repo / "data/user/models").mkdir(parents=True, exist_ok=True)
    subprocess.run([str(venv_bin / "python"), "-c",
                    "import torch; torch.save(torch.nn.Linear(2, 2), 'data/user/models/pickled.pt')"],
                   cwd=repo, env=env, check=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["original"] = {"checkpoint": "data/user/models/pickled.pt"}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    start = time.perf_counter()
    done = subprocess.run([str(venv_bin / "dvc"), "repro", "audit"], cwd=repo, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode == 0:
        sys.exit("dvc repro audit accepted a pickled checkpoint")
    stages = [line.split("'")[1] for line in done.stdout.splitlines() if line.startswith("Running stage")]
    error = next((line for line in done.stderr.splitlines() if line.startswith("error:")), "(no error line)")
    return seconds, stages, error


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times = []
    for k in range(args.repeats):
        with scratch_folder("bench-bad-checkpoint-", keep=False) as tmp:
            seconds, stages, error = one_try(tmp)
        times.append(seconds)
        print(f"try {k + 1}: {seconds:.1f} s; stages {', '.join(stages)}; {error}")
    median = statistics.median(times)
    verdict = "met" if median <= TARGET_S else "MISSED"
    print(f"\n| dvc repro audit, pickled checkpoint, to its error (median of {args.repeats}: "
          f"{', '.join(f'{t:.1f}' for t in times)}) | {median:.1f} s | <= {TARGET_S:g} s: {verdict} |")


if __name__ == "__main__":
    main()
