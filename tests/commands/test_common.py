"""Arguments several commands share: the same flags, checked the same way, in every command."""

import pytest
import torch

from elmo_train.cli import main

BILM_COMMANDS = [
    ["embed"],
    ["similar"],
    ["visualize"],
    ["probe", "wsd"],
    ["probe", "pos"],
    ["bias"],
]


@pytest.mark.parametrize("command", BILM_COMMANDS, ids=" ".join)
@pytest.mark.parametrize("value", ["0", "-3", "two"])
def test_a_bad_batch_size_is_one_line_naming_the_flag(command, value, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--batch-size", value])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --batch-size" in error
    assert "use 1 or more" in error or "is not an integer" in error


@pytest.mark.parametrize("command", BILM_COMMANDS, ids=" ".join)
def test_batch_size_and_device_have_the_same_defaults_everywhere(command, capsys):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--batch-size BATCH_SIZE sentences per biLM batch (default: 64)" in help_text
    assert "--device DEVICE cpu, cuda, cuda:1, ..." in help_text


@pytest.mark.parametrize("command", [*BILM_COMMANDS, ["evaluate"], ["tag", "train"]], ids=" ".join)
@pytest.mark.parametrize(
    ("value", "message"),
    [("gpu", "'gpu' is not a device: use cpu, cuda or cuda:N"), ("cuda", "CUDA is not available")],
)
def test_a_device_this_machine_lacks_is_one_line_naming_the_flag(command, value, message, capsys):
    if value == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--device", value])
    assert exit_.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "argument --device" in error and message in error
