"""Pruning primitives that never train (labkit.methods prunes and trains); sparsities are
absolute: the fraction of zeros after the call."""
from .channels import (channel_prune, check_keep, expand_vgg, l2_ranking, mask_channels,
                       shrink_vgg, sort_channels, uniform_keep)
from .magnitude import n_zeros, prune_global, prune_layer, prune_per_tensor
from .masks import (enforce, get_masks, global_sparsity, layer, max_difference, prunable,
                    remove_masks, set_mask, weight_state)
from .nm import is_nm, nm_mask, prune_nm
from .units import expand_mlp, hidden_layers, prune_units, shrink_mlp
