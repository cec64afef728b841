"""Adversarial attacks in pixel space [0, 1] (normalisation is inside every model)."""

from unlearn.attacks.pgd import pgd_l2

__all__ = ["pgd_l2"]
