"""What a folder holds, to show that a refused or failed write changed nothing on disk."""
import os


def snapshot(folder):
    """Every file under ``folder`` (relative path) with its bytes and modification time."""
    out = {}
    for dirpath, _, names in os.walk(folder):
        for n in names:
            path = os.path.join(dirpath, n)
            with open(path, 'rb') as f:
                out[os.path.relpath(path, folder)] = (f.read(), os.stat(path).st_mtime_ns)
    return out
