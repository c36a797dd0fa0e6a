"""The layer contracts of .importlinter hold, checked by the real lint-imports."""
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINT_IMPORTS = os.path.join(os.path.dirname(sys.executable), "lint-imports")


def lint_imports(folder):
    done = subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=folder, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=folder))
    return done.returncode, done.stdout + done.stderr


def test_the_imports_keep_every_contract():
    status, said = lint_imports(REPO)
    assert status == 0, said[-3000:]
    assert "3 kept, 0 broken" in said


def copy_of_the_packages(tmp_path):
    for package in ("model", "utils", "tools"):
        shutil.copytree(os.path.join(REPO, package), tmp_path / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(os.path.join(REPO, ".importlinter"), tmp_path)
    return tmp_path


def test_an_upward_import_and_a_cycle_break_the_build(tmp_path):
    copy = copy_of_the_packages(tmp_path)
    check = copy / "utils" / "data" / "check.py"
    check.write_text(check.read_text() + "\nfrom utils.cli import run  # an upward import\n")
    status, said = lint_imports(str(copy))
    assert status == 1 and "utils.data.check -> utils.cli" in said
    assert "Data flows one way" in said and "BROKEN" in said

    check.write_text(check.read_text().replace("from utils.cli import run  # an upward import\n", ""))
    checkpoints = copy / "utils" / "session" / "checkpoints.py"
    checkpoints.write_text(checkpoints.read_text() + "\nfrom utils.session import distribute  # noqa\n")
    distribute = copy / "utils" / "session" / "distribute.py"
    distribute.write_text(distribute.read_text() + "\nfrom utils.session import checkpoints  # noqa\n")
    status, said = lint_imports(str(copy))
    assert status == 1 and "No import cycles between the modules of a package BROKEN" in said
