"""Compatibility module: the reference reader and writer now live in the
mmpipe package (formats/python/mmpipe/stream.py; `pip install ./formats/python`).
`sys.path.insert(0, "formats/python"); import mmp_stream` keeps working:
Reader, Writer, load (-> header, records), write, StreamError, DTYPES ..."""
import sys

from mmpipe.stream import *  # noqa: F401,F403
from mmpipe.stream import _main

if __name__ == "__main__":
    _main(sys.argv[1:])
