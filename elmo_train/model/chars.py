"""Character ids, identical to AllenNLP's `ELMoCharacterMapper` and bilm-tf's `Batcher`.

One convention inside elmo-train: the *shifted* ids bilm-tf uses at prediction time, so
0 is padding (a whole padded token is 50 zeros), 1..256 are UTF-8 bytes + 1 and
257..261 are the special characters + 1 (262 rows in the character embedding). Only the
HDF5 boundary (`elmo_train.formats.bilm_tf`) converts to bilm-tf's 261-row training table.
"""

import torch

MAX_CHARS = 50  # max_characters_per_token of every released model
N_CHARACTERS = 262  # 256 bytes + 5 specials + padding 0

# Unshifted values as in bilm-tf `UnicodeCharsVocabulary`; +1 below.
_BOS, _EOS, _BOW, _EOW, _PAD = 256, 257, 258, 259, 260

BOS_TOKEN = "<S>"
EOS_TOKEN = "</S>"
UNK_TOKEN = "<UNK>"
PADDING_CHAR = _PAD + 1  # the shifted id filling each token's 50 columns after its word


def _make(chars: list[int], max_chars: int) -> list[int]:
    ids = [_BOW, *chars, _EOW]
    ids += [_PAD] * (max_chars - len(ids))
    return [c + 1 for c in ids]


def word_to_char_ids(word: str, max_chars: int = MAX_CHARS) -> list[int]:
    """The `max_chars` shifted character ids of one token.

    `<S>` and `</S>` get the begin/end-of-sentence characters; any other word is its UTF-8
    bytes cut to `max_chars - 2` (possibly mid-character, as bilm-tf does).
    """
    if word == BOS_TOKEN:
        return _make([_BOS], max_chars)
    if word == EOS_TOKEN:
        return _make([_EOS], max_chars)
    return _make(list(word.encode("utf-8", "ignore")[: max_chars - 2]), max_chars)


BOS_CHAR_IDS = word_to_char_ids(BOS_TOKEN)
EOS_CHAR_IDS = word_to_char_ids(EOS_TOKEN)


def batch_to_ids(sentences: list[list[str]], max_chars: int = MAX_CHARS) -> torch.Tensor:
    """Tokenized sentences to `(B, T, max_chars)` shifted char ids, as AllenNLP's `batch_to_ids`.

    No `<S>`/`</S>` are added (`Elmo` adds them; the biLM itself reads
    `batch_to_ids(with_boundaries(sentences))`). Shorter sentences are right-padded with all-zero
    tokens, as AllenNLP and bilm-tf's `Batcher.batch_sentences`.
    """
    longest = max((len(s) for s in sentences), default=0)
    out = torch.zeros(len(sentences), longest, max_chars, dtype=torch.long)
    for row, sentence in enumerate(sentences):
        if sentence:
            out[row, : len(sentence)] = torch.tensor(
                [word_to_char_ids(w, max_chars) for w in sentence]
            )
    return out


def with_boundaries(sentences: list[list[str]]) -> list[list[str]]:
    """Each sentence between `<S>` and `</S>`, the biLM's input."""
    return [[BOS_TOKEN, *sentence, EOS_TOKEN] for sentence in sentences]
