"""Files and where they live: the data directory, atomic writes and locks, the Hugging Face hub's cache.

The lowest layer besides the kernel: it imports nothing else of the package.
"""
