"""The one prepared device check: everything a first GPU session must measure, in one JSON.

    python benchmarks/gpu_check.py --out gpu_check.json     # on a GPU: about 3-5 minutes
    python benchmarks/gpu_check.py --device cpu --smoke      # seconds on a CPU (the test suite runs it)

Library only (torch; pydantic and PyYAML for the last item, the preset's projected time,
which is skipped with a note when they are missing). Synthetic learnable data of
CIFAR-10's size (see ``benchmarks/gpu.py``). It reports:

* torch, CUDA and cuDNN versions, the device, and the TF32 / determinism flags;
* s/epoch of ``train_`` at the presets' batch sizes (128, 256) in bf16 and fp32, the
  ratio of a bare loop's speed to it, the share of the bf16 peak, and the peak memory
  of each run (to size ``execution.workers``: jobs that share the GPU);
* D_A's samples/s on a trained model and the device-to-host syncs per PGD step;
* the largest logit difference between a bf16 forward pass and ``predict`` (float32),
  and whether ``predict`` gives the same logits under either precision setting;
* the relative error of FastClip's spectral norm of a conv layer with TF32 on and off,
  against float64 on the CPU;
* whether two deterministic training runs give the same bits;
* ``paper-cifar10-fast``'s projected time from the cost model at the measured s/epoch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _importable_from_the_checkout() -> None:
    """``unlearn`` and ``unlearn_pipeline`` from this checkout, installed or not (the device
    machine runs the copied tree without ``pip install``)."""
    import importlib.util

    sys.path[:0] = [str(Path(__file__).resolve().parent), str(ROOT / "src")]
    if importlib.util.find_spec("unlearn_pipeline") is None:
        spec = importlib.util.spec_from_file_location("unlearn_pipeline", ROOT / "pipeline" / "__init__.py",
                                                      submodule_search_locations=[str(ROOT / "pipeline")])
        module = importlib.util.module_from_spec(spec)
        sys.modules["unlearn_pipeline"] = module
        spec.loader.exec_module(module)


_importable_from_the_checkout()
from gpu import bare_epoch, da_rate, forward_gflop, learnable_data, library_epoch, resnet18  # noqa: E402


def versions(device: torch.device) -> dict:
    from unlearn.device import tf32_flags

    return {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "tf32": tf32_flags(), "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled()}


def peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def training(device, images, labels, width: int, batches, gflop: float, peak_tflops: float) -> dict:
    from unlearn.device import precision

    out = {}
    n = len(images)
    for name in ("bf16", "fp32"):
        with precision(name):
            for batch in batches:
                library_epoch(resnet18(device, width), images[:batch * 4], labels[:batch * 4], batch, device)
                bare = bare_epoch(resnet18(device, width), images, labels, batch, device)
                reset_peak(device)
                ours = library_epoch(resnet18(device, width), images, labels, batch, device)
                out[f"{name}_batch{batch}"] = {
                    "s_per_epoch": round(ours * 50_000 / n, 3), "bare_s_per_epoch": round(bare * 50_000 / n, 3),
                    "bare_over_train_speed": round(bare / ours, 3),
                    "share_of_bf16_peak": round(n * 3 * gflop / ours / 1000 / peak_tflops, 4),
                    "peak_memory_gib": peak_memory_gib(device)}
    return out


def syncs_per_pgd_step(model, images, labels, device, steps: int) -> float | None:
    """Device-to-host syncs per PGD step (CUDA's sync debug mode, counted as warnings)."""
    from unlearn.attacks import pgd_l2

    if device.type != "cuda":
        return None
    x = images[:512].float() / 255
    y = labels[:512].to(device)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pgd_l2(model, x, y, eps=0.5, steps=steps, stop_when_wrong=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught) / steps


def labels_in_bf16_vs_fp32(model, images, labels, device, steps: int) -> dict:
    """D_A built under bf16: the share of its labels (bf16 predictions at the adversarial
    examples) that a float32 forward pass reads differently, and the share it reads as the
    true class (samples that sit on the boundary)."""
    from unlearn.attacks import adversarial_set
    from unlearn.device import exact_forward, precision
    from unlearn.training import train_mode

    x, y = images[:512].float() / 255, labels[:512]
    with precision("bf16"):
        found = adversarial_set(model, x, y, eps_init=0.25, steps=steps, max_doublings=4)
    with torch.no_grad(), train_mode(model, False):
        in_fp32 = exact_forward(model, found.images).argmax(1).cpu()
    return {"da_labels_fp32_differs": float((in_fp32 != found.labels.cpu()).float().mean()),
            "da_fp32_reads_true_class": float((in_fp32 == y).float().mean()),
            "da_capped_under_bf16": int(found.capped.sum())}


def logit_rounding(model, images, device) -> dict:
    from unlearn.device import exact_forward, forward, precision
    from unlearn.evaluation import predict
    from unlearn.training import train_mode

    x = images[:2048]
    with torch.no_grad(), train_mode(model, False), precision("bf16"):
        rounded = forward(model, x.float() / 255)
        full = exact_forward(model, x.float() / 255)
        in_bf16 = predict(model, x)
    in_fp32 = predict(model, x)
    return {"max_abs_bf16_forward_minus_fp32": float((rounded - full).abs().max()),
            "max_abs_logit": float(full.abs().max()),
            "predict_same_under_bf16_and_fp32": bool(torch.equal(in_bf16, in_fp32))}


def spectral_error(model, device) -> dict:
    """FastClip's top singular value of the widest 3x3 conv, TF32 on vs off, against float64 on the CPU."""
    import copy

    from unlearn.device import tf32
    from unlearn.lipschitz import top_singular

    conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-2]
    shape = (conv.in_channels, 4, 4)
    reference, _ = top_singular(copy.deepcopy(conv).double().cpu(), shape, 1, 200,
                                generator=torch.Generator().manual_seed(0))
    exact, _ = top_singular(conv, shape, 1, 200, generator=torch.Generator().manual_seed(0))
    with tf32(True):
        loose, _ = top_singular.__wrapped__(conv, shape, 1, 200, generator=torch.Generator().manual_seed(0))
    ref = float(reference[0])
    return {"sigma_float64": ref, "rel_error_tf32_off": abs(float(exact[0]) - ref) / ref,
            "rel_error_tf32_on": abs(float(loose[0]) - ref) / ref}


def two_runs_identical(device, images, labels, width: int) -> dict:
    from unlearn.device import precision, set_determinism

    def run() -> str:
        model = resnet18(device, width)
        with precision("bf16"):
            library_epoch(model, images[:4096], labels[:4096], 256, device)
        digest = hashlib.sha256()
        for value in model.state_dict().values():
            digest.update(value.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()

    out = {}
    for deterministic in (True, False):
        set_determinism(device, deterministic)
        out["deterministic" if deterministic else "autotuned"] = run() == run()
    set_determinism(device, True)
    return out


def projected_fast_preset(s_per_epoch: float, cpu_s_per_model: float) -> dict:
    try:
        import yaml

        from unlearn.config import parse_params
        from unlearn_pipeline.cost import cost_table
        from unlearn_pipeline.presets import apply
    except ImportError as exc:
        return {"skipped": f"needs {exc.name} (carry its wheel; see docs/gpu.md)"}
    preset = yaml.safe_load((ROOT / "presets/paper-cifar10-fast.yaml").read_text())
    text = apply((ROOT / "params.yaml").read_text(), preset)
    params = parse_params(yaml.safe_load(text), source="params.yaml with paper-cifar10-fast")
    table, total = cost_table(params, s_per_epoch, cpu_s_per_model)
    return {"s_per_epoch": s_per_epoch, "minutes": round(total / 60, 1), "table": table}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CPU): checks the script runs")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak (H100 SXM, H200: 989)")
    parser.add_argument("--cpu-s-per-model", type=float, default=7.0,
                        help="evaluate's CPU seconds per model (benchmarks/evaluate_cifar.py)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    from unlearn.device import resolve_device, set_determinism

    device = resolve_device(args.device)
    set_determinism(device, True)
    n, width, batches, pgd_steps = (256, 4, (32, 64), 5) if args.smoke else (50_000, 64, (128, 256), 20)
    images, labels = learnable_data(n, device)
    gflop = forward_gflop(resnet18(device, width), device)
    result = {"versions": versions(device), "forward_gflop_per_image": gflop, "smoke": args.smoke}
    result["training"] = training(device, images, labels, width, batches, gflop, args.peak_tflops)
    trained = resnet18(device, width)
    library_epoch(trained, images, labels, batches[-1], device)
    rate, eps = da_rate(trained, images, labels, device, 64 if args.smoke else 2048, pgd_steps)
    result["adversarial"] = {"samples_per_s": round(rate, 1), "mean_eps": eps,
                             "syncs_per_pgd_step": syncs_per_pgd_step(trained, images, labels, device, pgd_steps),
                             **labels_in_bf16_vs_fp32(trained, images, labels, device, pgd_steps)}
    result["logits"] = logit_rounding(trained, images, device)
    result["spectral_norm"] = spectral_error(trained, device)
    result["bitwise_two_runs"] = two_runs_identical(device, images, labels, width)
    s_per_epoch = result["training"][f"bf16_batch{batches[-1]}"]["s_per_epoch"]
    result["paper_cifar10_fast"] = projected_fast_preset(s_per_epoch, args.cpu_s_per_model)
    text = json.dumps(result, indent=1, default=str)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
