"""An allocation bomb: holds on to 16 MiB blocks until the memory limit ends it."""

blocks = []
print("allocating", flush=True)
while True:
    # Filled with ones, so every page is really used rather than a shared zero page.
    blocks.append(b"\x01" * (16 * 1024 * 1024))
