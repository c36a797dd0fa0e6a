"""A stage's folder runs/<experiment>/<stage>/: one run at a time, no leftovers, room to save.

    lock = FolderLock(run_dir)   # a second run into the folder: an error naming the holder
    remove_leftovers(run_dir)    # <name>.partial, <name>.old, metrics.json.tmp of a killed run
    check_fresh_start(run_dir, resume, overwrite)
    ...
    lock.release()               # also released by the kernel when the process dies (kill -9)

TensorFlow-free, so that a second process can hold or test the lock in a blink.
"""
import datetime
import fcntl
import os
import shutil
import socket

from utils.errors import CheckpointError, FolderBusy
from utils.session.checkpoints import INTERRUPTED, epoch_dirs

LOCK_FILE = ".lock"
LEFTOVER_SUFFIXES = (".partial", ".old", ".tmp")


class FolderLock:
    """An exclusive flock on <run_dir>/.lock, which names the holder: 'pid host start-time'."""

    def __init__(self, run_dir):
        self.path = os.path.join(run_dir, LOCK_FILE)
        os.makedirs(run_dir, exist_ok=True)
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().split()
            self.handle.close()
            pid, host, since = (holder + ["?", "?", "?"])[:3]
            raise FolderBusy(f"{run_dir} is in use by another run: process {pid} on host {host} "
                             f"(since {since}). Wait for it to end, or give this run its own folder "
                             f"with --set experiment=<new name>") from None
        self.handle.seek(0)
        self.handle.truncate()
        started = datetime.datetime.now().isoformat(timespec="seconds")
        self.handle.write(f"{os.getpid()} {socket.gethostname()} {started}\n")
        self.handle.flush()

    def release(self):
        if not self.handle.closed:
            self.handle.seek(0)
            self.handle.truncate()
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def remove_leftovers(run_dir):
    """Delete what a killed or failed save left behind; return the names removed.

    A save that replaces a folder renames X to X.old, X.partial to X, then deletes X.old; killed
    between the two renames it leaves X.old (complete) without X, which gets its name back."""
    removed = []
    for name in sorted(os.listdir(run_dir)):
        final = os.path.join(run_dir, name[:-len(".old")])
        if name.endswith(".old") and not os.path.exists(final):
            os.rename(os.path.join(run_dir, name), final)
            continue
        if name.endswith(LEFTOVER_SUFFIXES):
            path = os.path.join(run_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
            removed.append(name)
    return removed


def check_fresh_start(run_dir, resume, overwrite):
    """A run without --resume into a folder holding checkpoints is refused (it would mix and prune
    them), unless `overwrite`: then the folder is emptied first. Returns what was removed."""
    epochs = [epoch for epoch, _ in epoch_dirs(run_dir)]
    interrupted = os.path.isdir(os.path.join(run_dir, INTERRUPTED))
    if resume or not (epochs or interrupted):
        return []
    if not overwrite:
        held = f"epochs {epochs[0]}-{epochs[-1]}" if epochs else "an interrupted run"
        raise CheckpointError(f"{run_dir} already holds checkpoints ({held}). Continue them with --resume, "
                              f"write elsewhere with --set experiment=<new name>, or replace them "
                              f"with --overwrite")
    removed = []
    for name in sorted(os.listdir(run_dir)):
        if name != LOCK_FILE:
            path = os.path.join(run_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
            removed.append(name)
    return removed
