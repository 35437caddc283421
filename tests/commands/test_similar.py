"""`elmo similar` end to end through the CLI, on a tiny random model saved to disk."""

import pytest

from elmo_train.cli import main

LABELLED = """river\tthe muddy bank of the river was steep .
finance\tshe paid the bank a large fee .
finance\tthe bank approved the loan .
river\tducks sat on the grassy bank .
"""


def write(tmp_path, text: str):
    path = tmp_path / "contexts.txt"
    path.write_text(text, encoding="utf-8")
    return path


def similar(*args) -> None:
    main(["similar", "--word", "bank", *map(str, args)])


def test_prints_every_layer_with_sense_accuracy(model_dir, tmp_path, capsys):
    similar("--model", model_dir, "--input", write(tmp_path, LABELLED))
    out = capsys.readouterr().out
    assert "layer 0 (token layer):" in out
    assert "sense-nearest-neighbour accuracy: n/a (context-free)" in out
    for layer in (1, 2):
        assert f"layer {layer} (LSTM layer {layer}):" in out
    assert out.count("sense-nearest-neighbour accuracy: ") == 3
    assert out.count("chance 0.33") == 2
    assert "the muddy [bank] of the river" in out
    assert "river\t" not in out  # the label is not part of the sentence


def test_one_layer_unlabelled_input(model_dir, tmp_path, capsys):
    unlabelled = "".join(line.split("\t")[1] + "\n" for line in LABELLED.splitlines())
    similar("--model", model_dir, "--input", write(tmp_path, unlabelled), "--layer", "2")
    out = capsys.readouterr().out
    assert "layer 2 (LSTM layer 2):" in out
    assert "layer 0" not in out and "layer 1" not in out
    assert "accuracy" not in out
    assert "the muddy [bank] of the river" in out


def test_released_files_give_the_same_table(model_dir, tmp_path, capsys):
    path = write(tmp_path, LABELLED)
    similar("--model", model_dir, "--input", path)
    from_dir = capsys.readouterr().out
    options, weights = model_dir / "options.json", model_dir / "weights.hdf5"
    similar("--options", options, "--weights", weights, "--input", path)
    assert capsys.readouterr().out == from_dir


@pytest.mark.parametrize(
    ("text", "extra", "message"),
    [
        ("the river was wide .\nno money .\n", [], "no line contains 'bank'"),
        ("the bank was wide .\nno money .\n", [], "only one line contains 'bank'"),
        (LABELLED + "an unlabelled bank line .\n", [], "line 5 has no sense label"),
        (LABELLED, ["--layer", "3"], "--layer 3: the model has layers 0 (token layer) to 2"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(model_dir, tmp_path, capsys, text, extra, message):
    path = write(tmp_path, text)
    with pytest.raises(SystemExit) as exit_info:
        similar("--model", model_dir, "--input", path, *extra)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    if "line" in message:
        assert str(path) in err


def test_missing_input_file_names_it(model_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        similar("--model", model_dir, "--input", tmp_path / "absent.txt")
    assert exit_info.value.code == 2
    assert "absent.txt: input file not found" in capsys.readouterr().err
