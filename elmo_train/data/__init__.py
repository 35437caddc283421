"""Data: input files and bad lines (`files`), tokenisers (`tokenizer`), the prepared corpus store
(`store`), packed row streams (`stream`) and the LightningDataModule (`datamodule`)."""
