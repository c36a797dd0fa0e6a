"""Every third-party module the code imports is installed by both requirement files."""
import ast
import os
import re
import sys
from importlib import metadata

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CODE = ("model", "utils", "tools", "tests")
TENSORFLOW_BUILDS = {"tensorflow", "tensorflow-cpu"}   # the one requirement the two files differ in


def normalized(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(path, seen=()):
    """{distribution name} of a requirements file, following its -r includes."""
    names = set()
    with open(path) as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if line.startswith("-r"):
                included = os.path.join(os.path.dirname(path), line[2:].strip())
                names |= requirements(included, seen + (path,))
            elif line:
                names.add(normalized(re.split(r"[\[<>=!~; ]", line, maxsplit=1)[0]))
    return names


def python_files():
    for name in sorted(os.listdir(REPO)):
        if name.endswith(".py"):
            yield os.path.join(REPO, name)
    for folder in CODE:
        for root, _, files in os.walk(os.path.join(REPO, folder)):
            yield from (os.path.join(root, f) for f in sorted(files) if f.endswith(".py"))


def local_names():
    """Top-level names that are this repository's own: packages, scripts, test helpers."""
    names = set(CODE)
    for folder in (REPO,) + tuple(os.path.join(REPO, f) for f in ("tests",)):
        for root, dirs, files in os.walk(folder):
            names |= {f[:-3] for f in files if f.endswith(".py")} | set(dirs)
    return names


def imported_modules(path):
    """{top-level module: first line} of every import in a file (also those inside functions)."""
    with open(path) as handle:
        tree = ast.parse(handle.read(), path)
    found = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops = [node.module.split(".")[0]]
        else:
            continue
        for top in tops:
            found.setdefault(top, node.lineno)
    return found


def third_party_imports():
    """{top-level module: 'file:line' of its first import} for modules neither stdlib nor ours."""
    ours = local_names()
    found = {}
    for path in python_files():
        for module, line in imported_modules(path).items():
            if module not in sys.stdlib_module_names and module not in ours and module != "__future__":
                found.setdefault(module, f"{os.path.relpath(path, REPO)}:{line}")
    return found


def test_every_imported_package_is_in_both_requirement_files():
    cpu = requirements(os.path.join(REPO, "requirements.txt"))
    gpu = requirements(os.path.join(REPO, "requirements-gpu.txt"))
    providers = metadata.packages_distributions()
    imports = third_party_imports()
    assert {"tensorflow", "numpy", "cv2", "faiss", "rasterio", "pyproj", "yaml"} <= set(imports)
    missing = []
    for module, where in sorted(imports.items()):
        distributions = {normalized(d) for d in providers.get(module, [])}
        if not distributions:
            missing.append(f"{module} ({where}) is not installed: add its package to requirements-common.txt")
            continue
        if distributions & TENSORFLOW_BUILDS:
            distributions = TENSORFLOW_BUILDS
        for name, listed in (("requirements.txt", cpu), ("requirements-gpu.txt", gpu)):
            if not distributions & listed:
                missing.append(f"{module} ({where}): {sorted(distributions)} not in {name}")
    assert missing == []


def test_the_two_files_differ_only_in_the_tensorflow_build():
    cpu = requirements(os.path.join(REPO, "requirements.txt"))
    gpu = requirements(os.path.join(REPO, "requirements-gpu.txt"))
    assert cpu ^ gpu == TENSORFLOW_BUILDS
    assert "faiss-cpu" in cpu and "rasterio" in gpu and "import-linter" in cpu


def test_a_package_missing_from_the_files_is_named(tmp_path):
    """The check itself: a requirements file without rasterio does not list it."""
    (tmp_path / "common.txt").write_text("numpy>=1\npyproj  # comment\n")
    (tmp_path / "requirements.txt").write_text("tensorflow-cpu==2.21.0\n-r common.txt\n")
    listed = requirements(str(tmp_path / "requirements.txt"))
    assert listed == {"tensorflow-cpu", "numpy", "pyproj"}
    assert "rasterio" not in listed
