"""Reading tagged files: formats, IOB1 and repaired IOB2, the tag set, and bad input."""

import pytest

from elmo_train.errors import UserError
from elmo_train.use.tagger.iob import TagSet, read_tagged, write_tagged


def write(tmp_path, text: str, name: str = "f.tsv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_tab_separated_sentences(tmp_path):
    f = read_tagged(write(tmp_path, "Acute\tB-Disease\npain\tI-Disease\n.\tO\n\n\nIt\tO\n"))
    assert [s.tokens for s in f.sentences] == [["Acute", "pain", "."], ["It"]]
    assert [s.tags for s in f.sentences] == [["B-Disease", "I-Disease", "O"], ["O"]]
    assert [s.line for s in f.sentences] == [1, 6]
    assert f.separator == "\t" and f.tagged and f.note() is None
    assert f.n_tokens == 4


def test_conll_columns_tag_last_and_docstart(tmp_path):
    text = "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n"
    f = read_tagged(write(tmp_path, text))
    assert [s.tokens for s in f.sentences] == [["EU", "rejects"], ["Peter"]]
    assert [s.tags for s in f.sentences] == [["B-ORG", "O"], ["B-PER"]]
    assert f.separator == " "
    bom = tmp_path / "bom.conll"
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode())  # as Windows editors save it
    assert [s.tokens for s in read_tagged(bom).sentences] == [["EU", "rejects"], ["Peter"]]


def test_iob1_file_is_read_and_converted(tmp_path):
    # IOB1: entities start with I-; B- only separates two adjacent entities of one type.
    f = read_tagged(write(tmp_path, "a\tI-X\nb\tI-X\nc\tB-X\nd\tO\ne\tI-Y\n"))
    assert f.sentences[0].tags == ["B-X", "I-X", "B-X", "O", "B-Y"]
    assert f.iob1 and f.starts_with_i == 2
    assert "read as IOB1" in f.note() and "2 entity starts" in f.note()


def test_stray_i_tags_in_an_iob2_file_are_repaired_and_counted(tmp_path):
    text = "a\tB-X\nb\tI-X\nc\tO\nd\tI-X\n\ne\tI-Y\nf\tB-X\ng\tI-Y\n"
    f = read_tagged(write(tmp_path, text))
    assert [s.tags for s in f.sentences] == [
        ["B-X", "I-X", "O", "B-X"],
        ["B-Y", "B-X", "B-Y"],  # I-Y after B-X is another type: a new entity
    ]
    assert not f.iob1 and f.starts_with_i == 3
    assert f.note().endswith(
        "repaired 3 I-X tags after O or another type to B-X (an entity starts with B- in IOB2)"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ("a\tO\nb O\n", "f.tsv:2: no tab in 'b O'"),
        ("a\nb\n", "f.tsv:1: a token without a tag"),
        ("\n\n", "f.tsv: no sentences"),
        ("a\tO\nb\tS-X\n", "f.tsv:2: tag 'S-X' is not IOB"),
        ("a\tO\nb\tDisease\n", "f.tsv:2: tag 'Disease' is not IOB"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, text, message):
    with pytest.raises(UserError, match=message) as error:
        read_tagged(write(tmp_path, text))
    assert "\n" not in str(error.value)


def test_untagged_input_for_prediction(tmp_path):
    f = read_tagged(write(tmp_path, "a\nb\n\nc\n"), require_tags=False)
    assert not f.tagged and [s.tokens for s in f.sentences] == [["a", "b"], ["c"]]
    with pytest.raises(UserError, match="some lines have a tag column and some do not"):
        read_tagged(write(tmp_path, "a O\nb\n\nc O\n"), require_tags=False)


def test_tag_set_and_types_missing_from_train(tmp_path):
    train = read_tagged(write(tmp_path, "a\tB-Disease\nb\tO\nc\tB-Chemical\n", "train.tsv"))
    tagset = TagSet.from_file(train)
    assert tagset.tags == ["O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"]
    tagset.check(read_tagged(write(tmp_path, "a\tI-Disease\n", "dev.tsv")), train.path)
    dev = read_tagged(write(tmp_path, "a\tO\nb\tB-Gene\n", "dev.tsv"))
    with pytest.raises(
        UserError, match=r"dev.tsv:2: tag 'B-Gene' does not occur in the training file .*train.tsv"
    ):
        tagset.check(dev, train.path)
    only_o = read_tagged(write(tmp_path, "a\tO\n", "o.tsv"))
    with pytest.raises(UserError, match="o.tsv: no entities"):
        TagSet.from_file(only_o)
    with pytest.raises(UserError, match="o.tsv: no entities"):
        tagset.check(only_o, train.path)


def test_iob2_transitions():
    start, follow = TagSet(["A", "B"]).allowed_transitions()  # O, B-A, I-A, B-B, I-B
    assert start == [True, True, False, True, False]
    assert [follow[a][2] for a in range(5)] == [False, True, True, False, False]  # I-A after
    assert all(follow[a][b] for a in range(5) for b in (0, 1, 3))


def test_predictions_are_written_in_the_input_format(tmp_path):
    conll = read_tagged(write(tmp_path, "EU NNP B-ORG\nrejects VBZ O\n"))
    write_tagged(conll, [["B-PER", "O"]], tmp_path / "out.txt")
    assert (tmp_path / "out.txt").read_text() == "EU NNP B-PER\nrejects VBZ O\n\n"
    tokens = read_tagged(write(tmp_path, "a\nb\n\nc\n"), require_tags=False)
    write_tagged(tokens, [["O", "B-X"], ["O"]], tmp_path / "out.tsv")
    assert (tmp_path / "out.tsv").read_text() == "a\tO\nb\tB-X\n\nc\tO\n\n"
