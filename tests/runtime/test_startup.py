"""A Ctrl-C while an entry point is still importing: one line and exit status 130, no traceback
(utils/startup.py). Real SIGINTs to real child processes, sent while they import."""
import os
import signal
import subprocess
import sys
import threading
import time

from tests import paths
from utils.startup import STARTING_INTERRUPTED

REPO = paths.REPO
TENSORFLOW_SCRIPTS = ("train_first_E_1.py", "train_second_E_2_1.py", "train_second_E_2_2.py",
                      "train_third_E_3.py", "evaluate.py", "demo.py", "localize.py", "train_university1652.py",
                      "evaluate_university1652.py")


def _as_from_a_terminal():
    # pytest hands its children an ignored SIGINT; a user's shell gives the default, unblocked
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])


class ImportingChild:
    """`python -X importtime ARGS`: its stderr names each module as it finishes importing; `seen`
    is set at the first module whose name starts with `marker`."""

    def __init__(self, args, marker):
        self.marker = marker
        self.lines = []
        self.seen = threading.Event()
        self.process = subprocess.Popen([sys.executable, "-X", "importtime"] + args, cwd=REPO,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                                        preexec_fn=_as_from_a_terminal)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stderr:
            self.lines.append(line)
            if line.startswith("import time:") and line.rsplit("|", 1)[-1].strip().startswith(self.marker):
                self.seen.set()

    def interrupt_when_seen(self, timeout=120):
        assert self.seen.wait(timeout), "".join(self.lines[-20:])
        time.sleep(0.05)
        self.process.send_signal(signal.SIGINT)

    def finish(self):
        self.process.wait(timeout=60)
        self.reader.join(timeout=10)
        self.process.stdout.close()
        said = [line for line in self.lines if not line.startswith("import time:")]
        return self.process.returncode, "".join(said)


def test_ctrl_c_while_tensorflow_loads_is_one_line_and_130():
    children = {script: ImportingChild([script, "--help"], marker="tensorflow") for script in TENSORFLOW_SCRIPTS}
    for child in children.values():
        child.interrupt_when_seen()
    for script, child in children.items():
        status, said = child.finish()
        assert status == 130 and "Traceback" not in said, (script, status, said[-2000:])
        assert said.strip().splitlines()[-1] == STARTING_INTERRUPTED, (script, said[-2000:])


def test_ctrl_c_while_the_dataset_check_starts_is_one_line_and_130():
    # the check starts in about half a second: the signal lands in its imports or, at worst, in
    # argparse after utils.cli.run took Ctrl-C back; either way one line and 130
    child = ImportingChild(["-m", "tools.check_data", "--help"], marker="utils.startup")
    child.interrupt_when_seen()
    status, said = child.finish()
    assert status == 130 and "Traceback" not in said, (status, said[-2000:])
    assert said.strip().splitlines()[-1] in (STARTING_INTERRUPTED, "interrupted: the check did not finish")


def test_a_sigint_ignored_by_the_shell_stays_ignored():
    code = ("import signal; signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "from utils import startup; startup.quiet_ctrl_c(); a = signal.getsignal(signal.SIGINT)\n"
            "startup.restore_ctrl_c(); print(a is signal.SIG_IGN, signal.getsignal(signal.SIGINT) is signal.SIG_IGN)\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler); startup.quiet_ctrl_c()\n"
            "b = signal.getsignal(signal.SIGINT); startup.restore_ctrl_c()\n"
            "print(b is startup._stop_quietly, signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "True", "True"]
