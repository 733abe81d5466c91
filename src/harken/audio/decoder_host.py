"""The decoder host process's entry point: `python -m harken.audio.decoder_host FD` (see isolation.py)."""

import sys

from harken.audio.isolation import host_main

if __name__ == "__main__":
    host_main(int(sys.argv[1]))
