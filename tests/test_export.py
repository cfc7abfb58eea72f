"""``geodino export``: timm loads the export strictly and computes the features geodino computes."""

from __future__ import annotations

import json
import logging
import re

import pytest
import timm
import torch

from geodino.cli import main
from geodino.eval.checkpoint import load_teacher_backbone

pytestmark = pytest.mark.usefixtures("one_thread")


def test_timm_loads_the_export(synthetic_checkpoint, tmp_path, caplog, monkeypatch) -> None:
    out = tmp_path / "export"
    assert main(["export", str(synthetic_checkpoint), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"] == "vit_tiny_patch16_224"
    assert config["model_args"]["in_chans"] == 8 and config["model_args"]["dynamic_img_size"] is True
    assert config["model_args"]["patch_size"] == 8 and config["model_args"]["depth"] == 2
    bands = json.loads((out / "bands.json").read_text())
    assert [b["name"] for b in bands["bands"]] == ["B02", "B03", "B04", "B08", "B11", "B12", "VH", "VV"]
    assert config["pretrained_cfg"]["mean"] == bands["mean"] and bands["modalities"]["s1"] == [6, 7]

    # Run the README's code as a user would copy it, keeping every model it creates.
    created = []
    real_create = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: created.append(real_create(*a, **k)) or created[-1])
    text = (out / "README.md").read_text()
    assert text.startswith("---\nlibrary_name: timm\n") and str(tmp_path) not in text  # no local path
    assert (out / "model.safetensors").stat().st_mode & 0o077 != 0  # readable by others (umask allowing)
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1).replace("path/to/this/folder", str(out))
    with caplog.at_level(logging.INFO, logger="timm"):
        exec(compile(code, "README.md", "exec"), {})
    assert len(created) == 2
    assert any("Loading pretrained weights" in r.getMessage() for r in caplog.records)  # the log is captured
    assert not [r for r in caplog.records if re.search(r"Missing keys|Unexpected keys|Unable to convert|random init",
                                                      r.getMessage())]

    backbone, _, _ = load_teacher_backbone(synthetic_checkpoint)
    from safetensors.torch import load_file

    weights = load_file(out / "model.safetensors")
    for model in created:
        assert model.load_state_dict(weights, strict=True)  # nothing missing, nothing unexpected
        for size in (32, 48):  # the crop size and another one (dynamic image size)
            x = torch.randn(2, 8, size, size)
            with torch.no_grad():
                # geodino runs its linears on oneDNN, timm on MKL: equal up to float rounding order
                torch.testing.assert_close(model(x), backbone(x).cls, rtol=1e-4, atol=1e-5)
