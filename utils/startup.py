"""Ctrl-C while an entry point is still starting (importing TensorFlow takes seconds): one line
and exit status 130, not a traceback from deep inside an import.

Imports nothing heavy. Every entry script calls `begin()` before its other imports;
`utils.cli.run` calls `restore_ctrl_c()` once TensorFlow is loaded, after which a Ctrl-C is the
usual KeyboardInterrupt that run (and the trainer's own handler) turn into their messages.
"""
import os
import signal
import sys

STARTING_INTERRUPTED = "interrupted while starting; nothing was done"
_previous = None


def _stop_quietly(signum, frame):
    # Nothing is written yet. A raised exception could be swallowed by a bare except in some
    # library's import, or leave a half-imported TensorFlow to shut down: leave at once instead.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os.write(2, f"\n{STARTING_INTERRUPTED}\n".encode())
    os._exit(130)


def begin():
    """An entry point's first call, before it imports TensorFlow: TensorFlow's C++ info lines off
    (unless TF_CPP_MIN_LOG_LEVEL is set; 0 shows them) and a quiet Ctrl-C while starting."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    quiet_ctrl_c()


def quiet_ctrl_c():
    """Until restore_ctrl_c(): a Ctrl-C prints one line and exits with 130. A SIGINT that the
    shell made ignored (a background job) stays ignored."""
    global _previous
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        _previous = signal.signal(signal.SIGINT, _stop_quietly)


def restore_ctrl_c():
    """Give Ctrl-C back to Python's KeyboardInterrupt (what it was before quiet_ctrl_c)."""
    global _previous
    if _previous is not None and signal.getsignal(signal.SIGINT) is _stop_quietly:
        signal.signal(signal.SIGINT, _previous)
    _previous = None
