"""model.init: a backbone starts from existing weights, bands matched by name, sizes resampled."""

from __future__ import annotations

import json
import re

import pytest
import timm
import torch
from safetensors.torch import save_file

from geodino.config import load_config
from geodino.models import build_backbone
from geodino.models.init import (
    InitError,
    apply_init,
    band_mapping,
    canonical_band,
    map_patch_embedding,
    read_init_weights,
)
from geodino.objectives.networks import build_student_teacher

pytestmark = pytest.mark.usefixtures("one_thread")
CARD_BANDS = ["B02", "B03", "B04", "B08", "B11", "B12", "VH", "VV"]  # the synthetic card


def _rgb_vit(**kwargs):
    torch.manual_seed(1)
    return timm.create_model("vit_tiny_patch16_224", in_chans=3, img_size=32, num_classes=0, depth=2,
                             dynamic_img_size=True, **kwargs).eval()


def test_band_names_match_in_any_spelling() -> None:
    assert [canonical_band(b) for b in ("B4", "b04", "red", "R", "nir", "B8A", "VV")] == \
        ["B04", "B04", "B04", "B04", "B08", "B8A", "VV"]
    assert band_mapping(["R", "G", "B"], ["B02", "B04", "VV"]) == [("B02", "B"), ("B04", "R"), ("VV", None)]


def test_new_bands_get_the_mean_known_slice_at_the_known_slices_norm() -> None:
    w = torch.randn(4, 3, 2, 2)
    mapped = map_patch_embedding(w, ["R", "G", "B"], ["B04", "VV", "B02"])
    assert torch.equal(mapped[:, 0], w[:, 0]) and torch.equal(mapped[:, 2], w[:, 2])
    new = mapped[:, 1]
    mean = w.mean(dim=1)
    cosine = torch.nn.functional.cosine_similarity(new.flatten(1), mean.flatten(1))
    torch.testing.assert_close(cosine, torch.ones(4))  # the direction of the mean slice
    torch.testing.assert_close(new.flatten(1).norm(dim=1), w.flatten(2).norm(dim=2).mean(dim=1))  # their norm


def test_an_rgb_model_in_an_8_band_run_gives_its_features_when_the_other_bands_are_at_their_mean(tmp_path) -> None:
    source = _rgb_vit()
    path = tmp_path / "rgb.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    backbone = build_backbone("vit_tiny_patch16_224", in_chans=8, img_size=32, patch_size=16, depth=2).eval()
    report = apply_init(backbone.model, read_init_weights(str(path)), CARD_BANDS)
    assert report["new_bands"] == ["B08", "B11", "B12", "VH", "VV"] and "R, G, B" in report["notes"][0]
    rgb = torch.randn(2, 3, 32, 32)
    x = torch.zeros(2, 8, 32, 32)  # standardised: 0 = the band's mean
    x[:, 2], x[:, 1], x[:, 0] = rgb[:, 0], rgb[:, 1], rgb[:, 2]  # R, G, B -> B04, B03, B02
    with torch.no_grad():
        expected = source.forward_features(rgb)[:, 0]
        # tolerance: the patch embedding sums 8 channels instead of 3 (zeros, in another order)
        torch.testing.assert_close(backbone(x).cls, expected, rtol=1e-5, atol=1e-5)


def test_other_projects_layouts_and_sizes(tmp_path, caplog) -> None:
    # DINOv2-style: a wrapper, prefixes, chunked blocks, register tokens and a mask token; 8-px
    # patches and a 4x4 grid of position embeddings, for a run with 16-px patches on a 2x2 grid.
    source = timm.create_model("vit_tiny_patch16_224", in_chans=3, img_size=32, patch_size=8, num_classes=0,
                               depth=2).state_dict()
    wrapped = {"module.backbone." + re.sub(r"^blocks\.(\d+)\.", r"blocks.0.\1.", k): v for k, v in source.items()}
    wrapped["module.backbone.register_tokens"] = torch.zeros(1, 4, 192)
    wrapped["module.backbone.mask_token"] = torch.zeros(1, 192)
    wrapped["module.head.mlp.0.weight"] = torch.zeros(2, 2)
    path = tmp_path / "dinov2.pth"
    torch.save({"teacher": wrapped}, path)
    backbone = build_backbone("vit_tiny_patch16_224", in_chans=8, img_size=32, patch_size=16, depth=2)
    with caplog.at_level("INFO", logger="geodino"):
        report = apply_init(backbone.model, read_init_weights(str(path), ["B04", "B03", "B02"]), CARD_BANDS)
    notes = " | ".join(report["notes"])
    assert "checkpoint's 'teacher'" in notes and "register_tokens" in notes and "mask_token" in notes
    assert "patch embedding resampled from [8, 8] to [16, 16]" in notes and "position embeddings resampled" in notes
    torch.testing.assert_close(backbone.model.blocks[1].attn.qkv.weight, source["blocks.1.attn.qkv.weight"])
    assert "B04 <- B04" in caplog.text and "VV <- new" in caplog.text  # the table is logged


def test_what_does_not_fit_is_one_line(tmp_path) -> None:
    backbone = build_backbone("vit_tiny_patch16_224", in_chans=8, img_size=32, patch_size=16, depth=2)
    wide = timm.create_model("vit_small_patch16_224", in_chans=3, img_size=32, num_classes=0, depth=2)
    torch.save(wide.state_dict(), tmp_path / "small.pth")
    with pytest.raises(InitError, match="does not fit this model.arch .*other shape: "):
        apply_init(backbone.model, read_init_weights(str(tmp_path / "small.pth")), CARD_BANDS)
    five = timm.create_model("vit_tiny_patch16_224", in_chans=5, img_size=32, num_classes=0, depth=2)
    torch.save(five.state_dict(), tmp_path / "five.pth")
    with pytest.raises(InitError, match="take 5 input bands; name them with model.init_bands"):
        read_init_weights(str(tmp_path / "five.pth"))
    with pytest.raises(InitError, match="not found"):
        read_init_weights(str(tmp_path / "nope.pth"))
    with pytest.raises(InitError, match="neither a file nor a folder, and timm cannot load"):
        read_init_weights("vit_not_a_model_at_all")
    ssl4eo = timm.create_model("vit_tiny_patch16_224", in_chans=13, img_size=32, num_classes=0, depth=2)
    torch.save(ssl4eo.state_dict(), tmp_path / "ssl4eo.pth")
    weights = read_init_weights(str(tmp_path / "ssl4eo.pth"))
    assert weights.bands[8] == "B8A" and "SSL4EO-S12" in weights.notes[0]


def test_a_run_continues_from_an_export_of_another(synthetic_checkpoint, tmp_path) -> None:
    from geodino.cli import main
    from geodino.data.synthetic import synthetic_card
    from tests.engine.runs import TINY

    export = tmp_path / "export"
    assert main(["export", str(synthetic_checkpoint), "--out", str(export)]) == 0
    cfg = load_config(None, [*TINY, f"model.init={export}"])
    report: dict = {}
    student, teacher = build_student_teacher(cfg, 8, CARD_BANDS, report)
    source = torch.load(synthetic_checkpoint, weights_only=True)["teacher"]
    for name, value in student.backbone.model.state_dict().items():
        assert torch.equal(value, source[f"backbone.model.{name}"]), name
    assert torch.equal(teacher.backbone.model.pos_embed, student.backbone.model.pos_embed)
    assert report["new_bands"] == [] and json.loads((export / "bands.json").read_text())["bands"][0]["name"] == "B02"
    # a run folder: the teacher, and the DINO head as well when it fits; its bands from its card.yaml
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(synthetic_checkpoint.read_bytes())
    synthetic_card().save(run / "card.yaml")
    student, _ = build_student_teacher(load_config(None, [*TINY, f"model.init={run}"]), 8, CARD_BANDS, report)
    assert report["head"] == "continued"
    for name, value in student.head.state_dict().items():
        assert torch.equal(value, source[f"head.{name}"]), name


def test_pretraining_from_an_export_writes_the_mapping(synthetic_checkpoint, tmp_path, caplog) -> None:
    from geodino.cli import main
    from geodino.engine.pretrain import pretrain
    from tests.engine.runs import TINY

    export = tmp_path / "export"
    assert main(["export", str(synthetic_checkpoint), "--out", str(export)]) == 0
    with caplog.at_level("INFO", logger="geodino"):
        pretrain(load_config(None, [*TINY, f"model.init={export}", "run.max_steps=1", f"run.out_dir={tmp_path / 'run'}"]))
    mapping = json.loads((tmp_path / "run" / "init.json").read_text())
    assert [b["from"] for b in mapping["bands"]] == CARD_BANDS and mapping["head"] == "fresh"
    assert f"weights    from export {export} (0 new bands; head fresh; init.json)" in caplog.text


def test_the_step_0_k_nn_scores_the_initial_weights(tmp_path) -> None:
    # A run from another run's teacher: its step-0 k-NN is that teacher's final one (same weights,
    # same held-out scenes), labelled as the initial weights, not as a random init.
    from geodino.engine.pretrain import pretrain
    from tests.engine.runs import TINY

    knn = ["eval.knn=true", "data.eval_train_samples=64", "data.eval_val_samples=32"]
    first = pretrain(load_config(None, [*TINY, *knn, "run.max_steps=4", f"run.out_dir={tmp_path / 'a'}"]))
    second = pretrain(load_config(None, [*TINY, *knn, "run.max_steps=1", f"run.out_dir={tmp_path / 'b'}",
                                         f"model.init={tmp_path / 'a'}"]))
    assert second["knn"]["random_teacher"] == first["knn"]["trained_teacher"]
    assert first["knn"]["initial"] == "random init"
    assert second["knn"]["initial"].startswith(f"model.init run {tmp_path / 'a'} (its teacher at step 4)")


def test_broken_or_foreign_weight_files_are_one_line_naming_the_file(tmp_path) -> None:
    """Garbage bytes, a truncated or empty file, a pickled object, a saved list: each a short
    reason naming the file. Before: torch's dozen-line message advising weights_only=False, or an
    AttributeError traceback for a saved list."""
    import pickle

    torch.save(timm.create_model("vit_tiny_patch16_224", in_chans=3, img_size=32, num_classes=0, depth=1).state_dict(),
               tmp_path / "good.pth")
    whole = (tmp_path / "good.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "garbage.pth").write_bytes(bytes(range(7, 256)) * 2)
    (tmp_path / "pickled.pth").write_bytes(pickle.dumps(object, protocol=4))
    torch.save([1, 2, 3], tmp_path / "list.pth")
    cases = {"truncated.pth": "empty, truncated or corrupt", "empty.pth": "empty, truncated or corrupt",
             "garbage.pth": "not a PyTorch file: it starts neither as a zip archive nor as a pickle",
             "pickled.pth": "holds objects geodino does not load", "list.pth": "holds a list, not a state dict"}
    for name, reason in cases.items():
        with pytest.raises(InitError) as err:
            read_init_weights(str(tmp_path / name))
        message = str(err.value)
        assert str(tmp_path / name) in message and reason in message, message
        assert "\n" not in message and "weights_only" not in message, message


def test_a_broken_checkpoint_is_one_short_line_naming_the_file(tmp_path) -> None:
    from geodino.runs.checkpoint import load_checkpoint

    (tmp_path / "checkpoint.pt").write_bytes(b"garbage" * 20)
    with pytest.raises(ValueError, match=r"checkpoint .*checkpoint\.pt cannot be read: not a PyTorch file") as err:
        load_checkpoint(tmp_path / "checkpoint.pt")
    assert "\n" not in str(err.value) and "weights_only" not in str(err.value)
