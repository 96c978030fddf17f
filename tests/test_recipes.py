"""One owner for each dense model: the recipe holds width, epochs and the data
split, so the labs that share a cached model cannot drift apart."""
import json
import re
from pathlib import Path

import pytest

import labkit as lk

ROOT = Path(__file__).resolve().parents[1]


def test_labs_that_share_a_model_load_one_split_and_one_cache_key():
    keys = set()
    for lab in ("02", "04", "05"):
        cfg = lk.configure("smoke", {"smoke": {}}, lab=lab, dataset="cifar10", model="vgg", quiet=True)
        split = lk.recipes.data_split("vgg", "smoke")
        assert (len(cfg.data.train), len(cfg.data.val)) == (split["train_subset"], split["val_size"])
        hp = lk.recipes.dense("vgg", "smoke")
        width = hp.pop("width")
        keys.add(lk.train.cache_key("vgg", width, cfg.data, hp, cfg.seed))
    assert len(keys) == 1


@pytest.mark.parametrize("lab, model", [("02", "vgg"), ("03", "resnet18"), ("04", "vgg"), ("05", "vgg")])
def test_cifar_labs_take_their_split_from_the_recipe(lab, model):
    nb = next((ROOT / "notebooks").glob(f"{lab}_*.ipynb"))
    code = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"] if c["cell_type"] == "code")
    assert f'model="{model}"' in code
    assert not re.search(r"\b(train_subset|val_size)=", code)        # the split is the recipe's
    assert "dense=dict(" not in code and "cfg.dense" not in code        # so is the width


def test_a_lab_cannot_set_the_split_of_a_shared_model():
    with pytest.raises(ValueError, match="train_subset.*'vgg' recipe"):
        lk.configure("smoke", {"smoke": dict(train_subset=100)}, lab="x", dataset="cifar10", model="vgg", quiet=True)


@pytest.mark.parametrize("model, profile, bad", [("lenet", "cpu", "lenet"), ("vgg", "laptop", "laptop")])
def test_data_split_names_bad_values(model, profile, bad):
    with pytest.raises(ValueError, match=bad):
        lk.recipes.data_split(model, profile)
