"""`elmo visualize` end to end through the CLI, on a tiny random model saved to disk."""

import importlib.util
import json

import pytest

from elmo_train.cli import main

SENTENCES = """\
the muddy bank of the river was steep .
she paid the bank a large fee .
the bank approved the loan .
ducks sat on the grassy bank .
"""
LABELS = "river\nfinance\nfinance\nriver\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "in.txt").write_text(SENTENCES, encoding="utf-8")
    (tmp_path / "labels.txt").write_text(LABELS, encoding="utf-8")
    return tmp_path


def visualize(*args) -> None:
    main(["visualize", "--word", "bank", *map(str, args)])


def test_labelled_input_prints_scores_and_writes_every_file(model_dir, files, capsys):
    visualize("--model", model_dir, "--input", files / "in.txt", "--labels", files / "labels.txt",
              "--output", files / "map.png", "--html", files / "map.html",
              "--json", files / "map.json")  # fmt: skip
    out = capsys.readouterr().out
    assert "'bank': 4 occurrences" in out and "labels: finance 2, river 2" in out
    assert "token layer" in out and "context-free" in out and "mean of layers" in out
    assert "chance 1-NN accuracy: 0.333" in out
    for name in ("map.png", "map.html", "map.json"):
        assert f"visualize: wrote {files / name}" in out
    data = json.loads((files / "map.json").read_text())
    assert [o["label"] for o in data["occurrences"]] == ["river", "finance", "finance", "river"]


def test_without_labels_colours_by_clusters_and_released_files_agree(model_dir, files, capsys):
    args = ("--input", files / "in.txt", "--output", files / "map.png")
    visualize("--model", model_dir, *args)
    from_dir = capsys.readouterr().out
    assert "k-means clusters of the top LSTM layer" in from_dir
    visualize(
        "--options", model_dir / "options.json", "--weights", model_dir / "weights.hdf5", *args
    )
    assert capsys.readouterr().out == from_dir


def test_without_input_maps_the_demo_sentences(model_dir, tmp_path, capsys):
    visualize("--model", model_dir, "--output", tmp_path / "bank.png")
    out = capsys.readouterr().out
    assert "labels: finance" in out and "river" in out
    assert (tmp_path / "bank.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--input", "{in}", "--word", "heron"], "is in 0 of its lines; a map needs at least 3"),
        (
            ["--input", "{in}", "--word", "river"],
            "in.txt: 'river' (matched as a whole, case-sensitive token) is in 1 of",
        ),
        (["--input", "{in}", "--labels", "{short}"], "short.txt has 2 lines and"),
        (["--labels", "{labels}"], "--labels needs --input"),
        (["--word", "heron"], "'heron' is not a demo word"),
        (["--input", "{in}", "--clusters", "1"], "--clusters 1: use 2 to 3 for 4 occurrences"),
        (["--input", "{absent}"], "absent.txt: input file not found"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(model_dir, files, capsys, extra, message):
    (files / "short.txt").write_text("river\nfinance\n")
    paths = {
        "in": files / "in.txt",
        "short": files / "short.txt",
        "labels": files / "labels.txt",
        "absent": files / "absent.txt",
    }
    extra = [a.format(**paths) for a in extra]
    with pytest.raises(SystemExit) as exit_info:
        visualize("--model", model_dir, "--output", files / "map.png", *extra)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (files / "map.png").exists()


@pytest.mark.skipif(importlib.util.find_spec("umap") is not None, reason="umap-learn installed")
def test_umap_without_its_package_is_one_clear_line(model_dir, files, capsys):
    with pytest.raises(SystemExit) as exit_info:
        visualize("--model", model_dir, "--input", files / "in.txt", "--method", "umap",
                  "--output", files / "map.png")  # fmt: skip
    assert exit_info.value.code == 2
    assert "pip install 'elmo-train[umap]'" in capsys.readouterr().err
