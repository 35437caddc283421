"""The built-in demo: a generated corpus with ambiguous words, trained on by `elmo train`.

`elmo_train.demo.corpus` generates it; the committed text lives in `elmo_train/demo/data/`.
"""
