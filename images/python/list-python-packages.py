"""Prints, as JSON, what a lesson can import in this image: the interpreter, then every installed
distribution (Debian's python3-* packages) with its version and the top-level modules it provides that
import.

Run when the image is built (its Dockerfile writes /usr/share/polykernel/packages.json); scripts/build-images.mjs
turns that file into the image's org.polykernel.packages label, which the service shows in the kernelspec's
metadata. The standard library is not listed: every Python has it.
"""

import importlib.metadata as metadata
import importlib.util
import json
import platform
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor


def importable(module):
    """True when `import module` works, tried in a fresh interpreter (some modules of a distribution are
    not meant to be imported on their own: pydevd's start-up hooks fail outside a debugger)."""
    try:
        if importlib.util.find_spec(module) is None:
            return False
    except (ImportError, ValueError):
        return False
    try:
        done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def main():
    # Private modules (_cffi_backend, _distutils_hack) and odd file names are not something to import.
    candidates = {
        module: dists
        for module, dists in metadata.packages_distributions().items()
        if not module.startswith("_") and module.isidentifier()
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        works = dict(zip(candidates, pool.map(importable, candidates)))
    modules_of = {}
    for module, dists in candidates.items():
        if not works[module]:
            continue
        for dist in dists:
            modules_of.setdefault(dist.lower(), set()).add(module)
    entries = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        modules = modules_of.get((name or "").lower())
        if not name or not modules or name.lower() in entries:
            continue
        entries[name.lower()] = {"name": name, "version": dist.version, "import": sorted(modules)}
    packages = [{"name": "python", "version": platform.python_version()}]
    packages += sorted(entries.values(), key=lambda entry: entry["name"].lower())
    json.dump(packages, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
