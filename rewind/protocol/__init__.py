"""Wire protocol codecs: frames in, typed messages out, and back. No I/O here."""
