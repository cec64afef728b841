"""FastClip: exact spectral norms of implicitly linear layers, and layer-wise clipping.

Reference: Boroojeny, Telgarsky, Sundaram, "Spectrum Extraction and Clipping for
Implicitly Linear Layers", AISTATS 2024 (arXiv 2402.16017).
"""

from unlearn.lipschitz.bound import lipschitz_bound
from unlearn.lipschitz.callback import FastClip, affine_layers, clipping_callbacks
from unlearn.lipschitz.clip import clip_
from unlearn.lipschitz.spectrum import top_singular

__all__ = ["FastClip", "affine_layers", "clip_", "clipping_callbacks", "lipschitz_bound", "top_singular"]
