"""Data: dataset cards, readers for Earth-observation formats, webdataset shards and the
embedded synthetic default. Loaders deliver raw bands; crops are made after batching
(see ``geodino.augment``)."""
