"""A BiLSTM-CRF sequence tagger on frozen biLM features (`elmo tag`): the downstream check of a
biLM. `iob` reads tagged files, `crf` and `network` are the model (pure torch), `features`
caches the biLM's layers, `data` batches sentences, `training` is the Lightning loop, `scores`
the seqeval figures, `directory` the saved tagger, `recipe` the two commands' steps."""
