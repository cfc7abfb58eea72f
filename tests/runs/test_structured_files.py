"""JSON and YAML files a user hands over or a run wrote: a broken one is one error naming the file
and where it breaks, never a parser traceback; a metrics log's bad lines are counted, not hidden."""

from __future__ import annotations

import json
import logging

import pytest

from geodino.data.card import CardError, DatasetCard
from geodino.runs.metrics import MetricsLog
from geodino.utils import read_json, read_yaml


@pytest.mark.parametrize("name,text,message", [
    ("a.json", '{"x": 1,\n  oops}', r"a\.json: not valid JSON \(Expecting property name .* at line 2, column 3\)"),
    ("b.json", "[1]", r"b\.json: expected a JSON object, found list"),
    ("c.yaml", "bands: [B02, B03\nname: x\n", r"c\.yaml: not valid YAML \(.* at line \d+, column \d+\)"),
    ("d.yaml", "", r"d\.yaml: expected a YAML mapping, found nothing"),
])
def test_bad_json_and_yaml_name_the_file_and_the_place(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    read = read_json if name.endswith(".json") else read_yaml
    with pytest.raises(ValueError, match=message):
        read(tmp_path / name)


def test_other_top_levels_and_inline_text_when_asked_for(tmp_path):
    (tmp_path / "b.json").write_text("[1]")
    assert read_yaml("inline", "a: 1") == {"a": 1} and read_json(tmp_path / "b.json", expect=list) == [1]


def test_a_broken_dataset_card_is_a_card_error_naming_it(tmp_path):
    """Was a yaml.parser.ParserError traceback (geodino export/stats --card, inspect with a broken
    card.yaml beside the shards)."""
    (tmp_path / "card.yaml").write_text("name: x\nbands: [B02, B03\n")
    with pytest.raises(CardError, match=r"dataset card .*card\.yaml: not valid YAML"):
        DatasetCard.load(tmp_path / "card.yaml")


def test_the_metrics_log_drops_a_cut_short_tail_quietly_and_counts_other_bad_lines(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    good = [json.dumps({"step": s, "loss": 1.0}) for s in (1, 2, 3)]
    path.write_text("\n".join(good) + '\n{"step": 4, "lo')
    with caplog.at_level(logging.WARNING, logger="geodino"):
        assert [r["step"] for r in MetricsLog(path).read()] == [1, 2, 3]
    assert not caplog.records  # a killed process's last line: expected, not news
    path.write_text("\n".join([good[0], "[1, 2, 3]", "garbage", good[1]]) + "\n")
    with caplog.at_level(logging.WARNING, logger="geodino"):
        assert [r["step"] for r in MetricsLog(path).read()] == [1, 2]
    assert "2 line(s) are not JSON records and were left out (line 2, 3)" in caplog.text
