"""A CPU dry run of the paper graph: ``paper-cifar10-fast`` with every epoch count cut to 1,
on a 512-image CIFAR-10 subset, through ``dvc repro`` end to end, on the CPU.

It checks that the GPU preset's graph (ResNet-18, bf16 autocast, the CIFAR-10 loader,
every stage) runs before device time is spent on it, and times it. The project is copied
to a temporary git repo (as the tests do) with MLflow in a temporary sqlite store.

    python benchmarks/paper_dry_run.py [--tarball ../shared/data/cifar10-jpg.tar.gz] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
TARBALL = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"


def subset(tarball: Path, dest: Path, train: int, test: int) -> Path:
    """An ImageFolder ``dest/cifar10/{train,test}/<class>/`` with the first ``train`` / ``test``
    images of the tarball, taken round-robin over the classes (balanced)."""
    wanted = {"train": train, "test": test}
    by_class: dict[tuple[str, str], list[tarfile.TarInfo]] = {}
    with tarfile.open(tarball) as archive:
        members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".jpg")]
        for member in members:
            split, label = Path(member.name).parts[-3:-1]
            by_class.setdefault((split, label), []).append(member)
        for split, count in wanted.items():
            classes = sorted(label for s, label in by_class if s == split)
            for i in range(count):
                member = sorted(by_class[(split, classes[i % len(classes)])], key=lambda m: m.name)[i // len(classes)]
                target = dest / "cifar10" / split / classes[i % len(classes)] / Path(member.name).name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())
    return dest / "cifar10"


def copy_project(dest: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)


def one_epoch_everywhere(params: dict, folder: Path) -> dict:
    params["data"]["path"] = str(folder)
    params["train"]["epochs"] = 1
    params["references"]["epochs"] = None
    params["execution"]["device"] = "cpu"
    for section in ("unlearn", "unlearn_class"):
        for cfg in params[section].values():
            cfg["epochs"] = 1
            if "max_epochs" in cfg:
                cfg["max_epochs"] = 1
    return params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tarball", type=Path, default=TARBALL)
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temp dir)")
    args = parser.parse_args()
    if not args.tarball.is_file():
        sys.exit(f"error: {args.tarball}: not found; pass --tarball with CIFAR-10 as an ImageFolder .tar.gz")
    work = args.keep or Path(tempfile.mkdtemp(prefix="paper-dry-run-"))
    project = work / "project"
    copy_project(project)
    folder = subset(args.tarball, work / "data", 512, 128)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
           "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def run(*cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)

    for cmd in (("git", "init", "-q"), ("unlearn", "preset", "paper-cifar10-fast")):
        done = run(*cmd)
        if done.returncode:
            sys.exit(f"error: {' '.join(cmd)}: {done.stderr.strip()}")
    params = yaml.safe_load((project / "params.yaml").read_text())
    (project / "params.yaml").write_text(yaml.safe_dump(one_epoch_everywhere(params, folder), sort_keys=False))
    run("git", "add", "-A")
    run("git", "commit", "-qm", "dry run")
    start = time.perf_counter()
    done = run("dvc", "repro")
    seconds = time.perf_counter() - start
    stages = done.stdout.count("Running stage")
    print(f"| dvc repro of paper-cifar10-fast, 1 epoch, 512 + 128 CIFAR-10 images, CPU | "
          f"{'ok' if done.returncode == 0 else 'FAILED'} | {stages} stages | {seconds / 60:.1f} min |")
    if done.returncode:
        print(done.stdout[-3000:], done.stderr[-3000:], sep="\n")
        sys.exit(1)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
