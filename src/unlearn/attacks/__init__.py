"""Adversarial attacks in pixel space [0, 1] (normalisation is inside every model)."""

from unlearn.attacks.adversarial_set import (AdversarialSet, adversarial_set, calibrate_eps_init, choose_eps_init,
                                             input_diameter)
from unlearn.attacks.pgd import pgd_l2, pgd_linf

__all__ = ["AdversarialSet", "adversarial_set", "calibrate_eps_init", "choose_eps_init", "input_diameter", "pgd_l2", "pgd_linf"]
