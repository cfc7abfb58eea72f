"""Webdataset shards: the sample format (``format``), writing them (``writer``) and streaming them
into training batches (``stream``)."""
