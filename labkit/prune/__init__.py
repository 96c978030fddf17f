"""Pruning methods. Every function takes absolute sparsities (zeros after the call)."""
from .magnitude import n_zeros, prune_global, prune_layer, prune_per_tensor
from .masks import (enforce, get_masks, global_sparsity, layer, prunable, remove_masks, set_mask,
                    weight_state)
from .units import expand_mlp, hidden_layers, kept_units, prune_units, shrink_mlp

__all__ = ["n_zeros", "prune_global", "prune_layer", "prune_per_tensor", "enforce", "get_masks",
           "global_sparsity", "layer", "prunable", "remove_masks", "set_mask", "weight_state",
           "expand_mlp",
           "hidden_layers", "kept_units", "prune_units", "shrink_mlp"]

from .channels import check_keep, expand_vgg, l2_ranking, mask_channels, shrink_vgg  # noqa: E402

__all__ += ["check_keep", "expand_vgg", "l2_ranking", "mask_channels", "shrink_vgg"]

from .nm import is_nm, nm_layers, nm_mask, prune_nm  # noqa: E402

__all__ += ["is_nm", "nm_layers", "nm_mask", "prune_nm"]

from . import greedy, sss  # noqa: E402

__all__ += ["greedy", "sss"]

from .channels import channel_prune, sort_channels, uniform_keep, uniform_ratios  # noqa: E402

__all__ += ["channel_prune", "sort_channels", "uniform_keep", "uniform_ratios"]

from . import schedules  # noqa: E402

__all__ += ["schedules"]
