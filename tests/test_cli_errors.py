"""Every error a user can cause ends in one line, and so does one nobody foresaw (issue 14, point 5)."""

from __future__ import annotations

import pytest

from geodino import cli


def _run(monkeypatch, capsys, error: BaseException, debug: bool = False) -> tuple[int, list[str]]:
    import geodino.cli.recipes as recipes

    def fail(args):
        raise error

    monkeypatch.setattr(recipes, "run", fail)
    code = cli.main([*(["--debug"] if debug else []), "recipes"])
    return code, capsys.readouterr().err.splitlines()


def test_a_user_error_with_a_multi_line_message_is_one_line(monkeypatch, capsys):
    code, lines = _run(monkeypatch, capsys, ValueError("cannot read x.pt:\n  Weights only load failed.\n\tmore"))
    assert code == 2 and lines == ["geodino recipes: error: cannot read x.pt: Weights only load failed. more"]


@pytest.mark.parametrize("error", [AssertionError("Input height (32) should be divisible by patch size (7)."),
                                   RuntimeError("line one\nline two"), ZeroDivisionError("integer modulo by zero"),
                                   IndexError("tuple index out of range")])
def test_an_unforeseen_failure_is_one_line_naming_its_kind_and_the_way_to_the_traceback(monkeypatch, capsys, error):
    code, lines = _run(monkeypatch, capsys, error)
    assert code == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"geodino recipes: error: {type(error).__name__}: ")
    assert "\n" not in lines[0] and "--debug shows where" in lines[0]


def test_debug_shows_the_traceback(monkeypatch, capsys):
    with pytest.raises(RuntimeError, match="boom"):
        _run(monkeypatch, capsys, RuntimeError("boom"), debug=True)


def test_very_long_messages_are_cut():
    assert len(cli.one_line(ValueError("x" * 5000))) == 600


@pytest.mark.parametrize("argv,message", [
    (["eval", "knn", "c.pt", "--train", "synthetic", "--val", "synthetic", "--k", "-3"], "argument --k: must be >= 1, got -3"),
    (["eval", "knn", "c.pt", "--train", "synthetic", "--val", "synthetic", "--temperature", "0"],
     "argument --temperature: must be > 0, got 0.0"),
    (["eval", "linear", "c.pt", "--train", "synthetic", "--val", "synthetic", "--n-last-blocks", "0"],
     "argument --n-last-blocks: must be >= 1, got 0"),
    (["eval", "knn", "c.pt", "--train", "synthetic", "--val", "synthetic", "--num-samples", "0"],
     "argument --num-samples: must be >= 1, got 0"),  # 0 silently meant the default
    (["attention", "c.pt", "synthetic#0", "--size", "-16"], "argument --size: must be >= 1, got -16"),
    (["bench", "step", "--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    (["shard", "synthetic", "--out", "x", "--num-classes", "1"], "argument --num-classes: must be in [2, 8], got 1"),
    (["inspect", "x", "--max-samples", "abc"], "argument --max-samples: expected an integer, got 'abc'"),
])
def test_command_line_numbers_outside_their_range_are_refused_by_option(capsys, argv, message):
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("part,message", [("1/2", "--part 1/2: synthetic shards are written by one job"),
                                          ("abc", "--part 'abc': expected I/N")])
def test_shard_options_the_synthetic_source_cannot_honour_are_refused(tmp_path, capsys, part, message):
    """``--part`` used to be dropped without a word: every job of an array wrote the whole set."""
    code = cli.main(["shard", "synthetic", "--out", str(tmp_path / "s"), "--num-samples", "8", "--part", part])
    assert code == 2 and message in capsys.readouterr().err and not (tmp_path / "s").exists()


@pytest.mark.parametrize("argv,message", [
    (["--out", "a", "run.out_dir=b"], "--out and run.out_dir=b disagree"),  # --out won silently
    (["--no-resume", "--resume", "x.pt"], "--no-resume and --resume contradict each other"),
    (["run.resume=never", "--resume", "x.pt"], "--resume and run.resume=never disagree"),  # resumed silently
])
def test_pretrain_options_that_contradict_a_key_are_refused(capsys, argv, message):
    assert cli.main(["pretrain", *argv]) == 2 and message in capsys.readouterr().err


def test_an_option_that_agrees_with_its_key_is_fine(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert cli.main(["pretrain", "--out", out, f"run.out_dir={out}", "--print-config"]) == 0
    assert f"out_dir: {out}" in capsys.readouterr().out


def test_split_options_on_the_synthetic_scenes_are_refused(synthetic_checkpoint, tmp_path, capsys):
    """They were ignored without a word: the synthetic bank and queries have no splits."""
    argv = ["eval", "knn", str(synthetic_checkpoint), "--train", "synthetic", "--val", "synthetic",
            "--train-split", "val", "--out", str(tmp_path)]
    assert cli.main(argv) == 2
    assert "--train-split val: the synthetic scenes have no splits" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["attention", "{ckpt}", "synthetic#0", "--size", "13"],
     "--size=13 is not a multiple of the patch size 8 (e.g. 8 or 16)"),
    (["finetune", "seg", "seg_synthetic_quickstart", "model.pretrained={ckpt}", "data.image_size=36",
      "data.num_samples=8", "data.val_samples=4", "--out", "{out}"],
     "data.image_size=36 is not a multiple of the patch size 8 (e.g. 32 or 40)"),
])
def test_an_input_size_that_is_not_whole_patches_is_refused_naming_the_setting(synthetic_checkpoint, tmp_path,
                                                                               capsys, argv, message):
    # timm's own check was an AssertionError from inside the model: "an unexpected failure".
    argv = [a.format(ckpt=synthetic_checkpoint, out=tmp_path / "out") for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


@pytest.mark.parametrize("argv,message", [
    (["bench", "host", "--images", "abc"], "--images 'abc': expected comma-separated int values"),
    (["bench", "host", "--images", "-2"], "--images '-2': images per step must be >= 1"),
    (["bench", "host", "--objectives", "foo"], "--objectives: unknown foo; choose from dino, selfpatch, masked"),
    (["doctor", "--only", ""], "--only '': an empty item"),  # it ran every check
])
def test_bench_and_doctor_options_are_refused_naming_the_option(capsys, argv, message):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
