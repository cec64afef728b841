from unlearn_pipeline.stages.findings import accurate_target


def test_f2_and_f3_compare_with_the_smoothest_target_that_keeps_accuracy():
    labels = ["none", "L2", "L1.5", "L1"]
    chosen, kept = accurate_target({"none": 97.0, "L2": 95.5, "L1.5": 93.0, "L1": 73.0}, labels, 2.0)
    assert chosen == "L2" and kept["passed"] and "within 2 points" in kept["why"]
    chosen, kept = accurate_target({"none": 97.0, "L2": 90.0, "L1.5": 93.0, "L1": 73.0}, labels, 2.0)
    assert chosen == "L1" and not kept["passed"] and kept["why"].startswith("no clipped target keeps accuracy")


def test_the_prepared_channel_statistics_do_not_depend_on_the_thread_count():
    import torch

    from unlearn_pipeline.stages.prepare import channel_stats

    images = torch.randint(0, 256, (5000, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pixels = images.double() / 255
    results, previous = [], torch.get_num_threads()
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results.append(channel_stats(images))
    torch.set_num_threads(previous)
    assert results[0] == results[1]
    mean, std = results[0]
    assert torch.allclose(torch.tensor(mean, dtype=torch.float64), pixels.mean(dim=(0, 2, 3)), atol=1e-12)
    assert torch.allclose(torch.tensor(std, dtype=torch.float64), pixels.std(dim=(0, 2, 3)), atol=1e-12)
